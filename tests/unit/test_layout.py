"""The console's journey graph: layers top to bottom, branches side by side, loops aside."""

from __future__ import annotations

from collections.abc import Callable

from journeyman.domain.model import Workspace
from journeyman.web.layout import ENTRY, HEIGHT, WIDTH, Picture, lay_out

JOURNEY = """
kind: journey
name: loop
entry: {event: signed_up}
steps:
  - id: pause
    wait: 1d
  - id: check
    branch:
      - when: profile.plan == "pro"
        goto: pro
      - when: profile.plan == "team"
        goto: pro
      - otherwise: again
  - id: again
    send: hello_email
    next: pause
  - id: pro
    send: hello_email
  - id: done
    end: converted
"""


def boxes(picture: Picture) -> dict[str, tuple[float, float]]:
    return {box.id: (box.x, box.y) for box in picture.boxes}


def test_steps_go_one_layer_below_their_parents_and_branches_sit_side_by_side(
    workspace: Callable[..., Workspace],
) -> None:
    picture = lay_out(workspace(JOURNEY).journeys["loop"])
    at = boxes(picture)
    assert set(at) == {ENTRY, "pause", "check", "again", "pro", "done"}
    rows = sorted({y for _, y in at.values()})
    assert [at[n][1] for n in (ENTRY, "pause", "check")] == rows[:3]
    assert at["again"][1] == at["pro"][1] == rows[3]
    assert abs(at["again"][0] - at["pro"][0]) >= WIDTH  # no overlap
    assert at["done"][1] == rows[4]
    assert picture.height >= rows[4] + HEIGHT
    assert all(x >= 0 and x + WIDTH <= picture.width for x, _ in at.values())


def test_a_loop_is_drawn_back_up_and_cases_to_one_step_share_an_edge(
    workspace: Callable[..., Workspace],
) -> None:
    picture = lay_out(workspace(JOURNEY).journeys["loop"])
    (back,) = [line for line in picture.lines if line.back]
    assert (back.source, back.target) == ("again", "pause")
    (to_pro,) = [line for line in picture.lines if (line.source, line.target) == ("check", "pro")]
    assert to_pro.label == 'profile.plan == "pro" / profile.plan == "team"'
    assert all(line.path.startswith("M") for line in picture.lines)
