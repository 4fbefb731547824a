"""Run colours: 50 colours any two of which differ by a CIE76 ΔE of at least 20.

The ten Tableau colours first (what a small comparison has always shown), then
colours picked greedily from the sRGB grid of step 17, each the one farthest (in
CIELAB) from all picked before, within lightness 35-72 and chroma >= 25 so every
line reads on the light and the dark theme. static/runstore/charts.js holds the
same list for pages whose runs come without colours.
"""

RUN_COLORS = [
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
    "#5500ff",
    "#ff00ee",
    "#0055ee",
    "#666611",
    "#ff0077",
    "#007755",
    "#8811aa",
    "#ff8888",
    "#dd9955",
    "#992255",
    "#99bb77",
    "#0088ff",
    "#994400",
    "#ee11aa",
    "#00cc00",
    "#dd77ff",
    "#aaaadd",
    "#9944ff",
    "#ff0000",
    "#226611",
    "#00bb88",
    "#996688",
    "#117788",
    "#dd9900",
    "#00bbff",
    "#992288",
    "#77bb00",
    "#bb4444",
    "#3355aa",
    "#779922",
    "#ff6699",
    "#ee7744",
    "#aa9966",
    "#dd99aa",
    "#66aa99",
    "#aa9933",
    "#6644bb",
    "#0033ee",
    "#9999ff",
    "#cc00ff",
]


def run_color(index: int) -> str:
    return RUN_COLORS[index % len(RUN_COLORS)]
