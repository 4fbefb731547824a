import hashlib
import math
import random
import secrets
import time

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import BaseCommand
from django.utils import timezone

from accounts.models import ApiToken
from projects import services as project_services
from projects.models import Project, ProjectRole, Visibility, Workspace, WorkspaceRole
from runs import services
from runs.models import Run, RunState

TOKEN_NAME = "make-run"


class Command(BaseCommand):
    help = "Create the admin user and demo runs (once), and print how to log in and log runs."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000")
        parser.add_argument("--runs", type=int, default=36)

    def handle(self, *args, url, runs, **options):
        admin, password = self._admin()
        workspace = Workspace.objects.filter(slug="demo").first() or project_services.create_workspace(
            admin, "demo", "Demo"
        )
        people = [admin] + [self._member(workspace, name) for name in ("alice", "bob", "carol")]
        vision = self._project(admin, workspace, "vision", "VIS")
        for person in people[1:]:
            project_services.set_project_role(vision, person, ProjectRole.CONTRIBUTOR)
        if not vision.runs.exists():
            started = time.monotonic()
            self._fill(vision, people, runs)
            self.stdout.write(f"demo: {runs} runs logged to demo/vision in {time.monotonic() - started:.1f} s")
        ApiToken.objects.filter(user=admin, name=TOKEN_NAME, revoked_at__isnull=True).update(revoked_at=timezone.now())
        _, token = ApiToken.issue(admin, name=TOKEN_NAME)
        self.stdout.write(
            "\n".join(
                [
                    "",
                    f"Runstore is starting at {url}/",
                    f"  log in as: admin / {password}",
                    "  log runs from Python after:",
                    f"    export RUNSTORE_URL={url}",
                    f"    export RUNSTORE_API_TOKEN={token}",
                    "    export RUNSTORE_PROJECT=demo/vision",
                    "",
                ]
            )
        )

    def _admin(self):
        password_file = settings.VAR_DIR / "admin_password"
        if not password_file.exists():
            password_file.write_text(secrets.token_urlsafe(12))
            password_file.chmod(0o600)
        password = password_file.read_text().strip()
        admin = User.objects.filter(username="admin").first()
        if admin is None:
            admin = User.objects.create_superuser("admin", "admin@localhost", password)
        return admin, password

    def _member(self, workspace, username):
        user = User.objects.filter(username=username).first() or User.objects.create_user(
            username, password=secrets.token_urlsafe(12)
        )
        project_services.set_membership(workspace, user, WorkspaceRole.MEMBER)
        return user

    def _project(self, user, workspace, slug, key):
        return Project.objects.filter(workspace=workspace, slug=slug).first() or project_services.create_project(
            user, workspace, slug, key=key, description=f"Demo {slug} experiments", visibility=Visibility.WORKSPACE
        )

    def _fill(self, project, people, count):
        rng = random.Random(42)
        config = b"model: resnet50\nepochs: 30\naugment: [flip, crop]\n"
        for index in range(count):
            owner = people[index % len(people)]
            lr = rng.choice([1e-4, 3e-4, 1e-3, 3e-3, 1e-2])
            batch_size = rng.choice([32, 64, 128, 256])
            optimizer = rng.choice(["adam", "sgd", "adamw"])
            dataset_version = rng.choice(["v1", "v2", "v3"])
            tags = rng.sample(["baseline", "augment", "best", "sweep", "debug"], k=rng.randint(0, 2))
            run, _ = services.create_run(owner, project, name=f"{optimizer}-lr{lr:g}-bs{batch_size}", tags=tags)
            steps = rng.choice([1000, 1500, 2000])
            quality = 1.0 / (1.0 + abs(math.log10(lr) + 3)) * (1.1 if optimizer != "sgd" else 0.9)
            loss, acc = [], []
            for step in range(steps):
                decay = math.exp(-step / (steps / 4))
                loss.append(2.3 * decay + 0.2 * (1 - quality) + rng.gauss(0, 0.03))
                acc.append(min(0.999, (1 - decay) * (0.8 + 0.18 * quality) + rng.gauss(0, 0.01)))
            val_steps = list(range(0, steps, 10))
            now = time.time() - (count - index) * 3600
            blob = self._upload(owner, run, "config.yaml", config)
            ops = [
                {
                    "op": "assign",
                    "path": "parameters",
                    "value": {
                        "lr": lr,
                        "batch_size": batch_size,
                        "epochs": steps // 50,
                        "seed": index,
                        "optimizer": {"name": optimizer, "momentum": 0.9 if optimizer == "sgd" else 0.0},
                    },
                },
                {
                    "op": "assign",
                    "path": "data/train",
                    "value": {"name": "imagenet-subset", "version": dataset_version},
                },
                {"op": "assign", "path": "eval/acc", "value": round(acc[-1], 4)},
                {"op": "assign", "path": "sys/hostname", "value": f"gpu-node-{index % 4}"},
                {"op": "append", "path": "train/loss", "values": loss, "timestamps": [now + s for s in range(steps)]},
                {"op": "append", "path": "train/acc", "values": acc, "timestamps": [now + s for s in range(steps)]},
                {"op": "append", "path": "val/loss", "values": [loss[s] * 1.1 for s in val_steps], "steps": val_steps},
                {
                    "op": "append",
                    "path": "stdout",
                    "kind": "string",
                    "values": [f"epoch {e}: loss={loss[min(e * 50, steps - 1)]:.4f}" for e in range(steps // 50)],
                },
                {"op": "upload", "path": "config", "sha256": blob.sha256, "name": "config.yaml"},
            ]
            services.apply_batch(owner, run, stream="demo", seq=0, raw_ops=ops)
            state = RunState.RUNNING if index >= count - 2 else rng.choice([RunState.FINISHED] * 5 + [RunState.FAILED])
            if state != RunState.RUNNING:
                services.update_run(owner, run, state=state)
            created = timezone.now() - timezone.timedelta(hours=count - index)
            Run.objects.filter(pk=run.pk).update(created_at=created)

    def _upload(self, user, run, name, content):
        upload = SimpleUploadedFile(name, content, content_type="text/yaml")
        upload.sha256 = hashlib.sha256(content).hexdigest()
        return services.store_upload(user, run, upload)
