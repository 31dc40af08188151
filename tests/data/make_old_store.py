"""Writes tests/data/store-8c370e0.db: a real store written by the release at commit 8c370e0.

Run against that release's code, not this one:
    git worktree add /tmp/old 8c370e0
    cd /tmp/old && PYTHONPATH=src:tests python /path/to/make_old_store.py OUT.db
One honest fix, then a goal paused, raised, resumed over budget, ran out of turns and was cleared: most kinds.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from goalkeeper.goals import control
from goalkeeper.store import Store
from scenario import HONEST_FIX, complete, new_goal, run, sample_repo, scripted, shell, step


def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workspace = sample_repo(Path(tmp))
        with Store(Path(tmp) / "state.db") as store:
            goal = new_goal(store, workspace)
            run(store, goal, workspace, scripted(HONEST_FIX))
            again = new_goal(store, workspace, objective="Make it fail less", checks=["never=exit 1"], budget_turns=2)
            control.request(store, again, "pause", wait_s=0)
            control.request(store, again, "resume", wait_s=0, add_turns=1)
            control.request(store, again, "budget", wait_s=0, add_tokens=50000)
            wandering = [step("Look.", shell("ls")), step("Still looking.", shell("false")), step("Done?"),
                         step("", complete("maybe"))] * 3
            run(store, store.get_goal_by_id(again.goal_id), workspace, scripted(wandering))
            control.request(store, store.get_goal_by_id(again.goal_id), "clear", wait_s=0)
        shutil.copyfile(Path(tmp) / "state.db", out)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
