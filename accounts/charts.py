"""The balance-over-time chart, drawn on the server as SVG coordinates.

No JavaScript and no CDN: the template turns these numbers into an inline SVG.
One step per event, in order (a busy minute and a quiet month get the same
width, so every event stays visible); the axis labels give the times. The line
is a step: a balance holds until the next event changes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from accounts.domain import direction
from accounts.selectors import ChartPoint

WIDTH, HEIGHT, PAD_X, PAD_Y = 760, 220, 56, 18


@dataclass
class Marker:
    x: float
    y: float
    kind: str
    point: ChartPoint


@dataclass
class Chart:
    width: int
    height: int
    path: str
    markers: list[Marker]
    top: int
    bottom: int
    first: ChartPoint
    last: ChartPoint
    baseline_y: float


def balance_chart(points: list[ChartPoint]) -> Chart | None:
    if not points:
        return None
    top = max(max(p.balance for p in points), 1)
    bottom = 0
    steps = max(len(points) - 1, 1)

    def x(index: int) -> float:
        return round(PAD_X + index / steps * (WIDTH - 2 * PAD_X), 1)

    def y(balance: int) -> float:
        return round(HEIGHT - PAD_Y - (balance - bottom) / (top - bottom) * (HEIGHT - 2 * PAD_Y), 1)

    markers, path = [], []
    for index, point in enumerate(points):
        px, py = x(index), y(point.balance)
        path.append(f"M{px},{py}" if index == 0 else f"H{px} V{py}")
        markers.append(Marker(px, py, direction(point.event_type), point))
    return Chart(WIDTH, HEIGHT, " ".join(path), markers, top, bottom, points[0], points[-1], y(bottom))
