"""`gk fork` (issue 19, item 3): a new thread, worktree and branch from the parent's checkpoint, with the parent's
conversation so far; the parent goes on untouched. Real git worktrees, the real store, the scripted model."""

from __future__ import annotations

from pathlib import Path

from goalkeeper.goals.fork import fork, forked_from
from goalkeeper.store import Store
from helpers import git
from scenario import (
    FIX_PATCH,
    TESTS,
    call,
    complete,
    contract_with,
    gk,
    new_goal,
    run,
    sample_repo,
    scripted,
    shell,
    step,
    write_script,
)


def test_a_fork_runs_its_own_goal_while_the_paused_parent_stays_as_it_was(
        tmp_path: Path, store: Store, goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    parent = new_goal(store, workspace, contract_with(review={"pause_after": "checkpoint"}))
    parent_script = [step("Percent means 10 for 10%.", call("apply_patch", patch=FIX_PATCH),
                          call("checkpoint", done="divided by 100", verified="not yet", remaining="run the tests",
                               next="run the tests")),
                     step("Patched; the tests come next.")]
    assert run(store, parent, workspace, scripted(parent_script)).status == "paused"
    branch = git(workspace, "branch", "--show-current").strip()
    head, events_before = git(workspace, "rev-parse", "HEAD").strip(), len(store.events(parent.thread_id))

    made = fork(store, workspace)
    assert made.commit == head and made.parent.thread_id == parent.thread_id
    assert "percent / 100" in (made.workspace / "cart.py").read_text()  # the parent's checkpoint, not its base
    record = forked_from(store, made.thread.thread_id)
    assert record is not None and "divided by 100" in record.handoff and "forked from thread" in record.handoff

    child = new_goal(store, made.workspace, objective="Write NOTES.md", checks=["notes=test -f NOTES.md"])
    assert child.thread_id == made.thread.thread_id
    # The scripted model counts the responses a hand-off says were made before it (the parent's two).
    model = scripted([step("(the parent's)")] * 2
                     + [step("", shell("echo the fix divides by 100 > NOTES.md")), step("", complete()), step("Done.")])
    assert run(store, child, made.workspace, model).status == "achieved"
    first = model.requests[0].messages
    assert any("divided by 100" in m.content for m in first if m.role == "user")  # the conversation so far

    # The parent: same status, branch, head and events; its working tree never saw NOTES.md.
    assert store.get_goal_by_id(parent.goal_id).state.status == "paused"
    assert git(workspace, "branch", "--show-current").strip() == branch
    assert git(workspace, "rev-parse", "HEAD").strip() == head and not (workspace / "NOTES.md").exists()
    assert len(store.events(parent.thread_id)) == events_before
    listed = gk("threads", home=goalkeeper_home).stdout
    assert f"{made.thread.thread_id}" in listed and f"(fork of {parent.thread_id})" in listed


def test_gk_fork_with_a_goal_prints_where_to_run_it(tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    nothing = gk("fork", "--cwd", str(workspace), home=goalkeeper_home)
    assert nothing.returncode == 4 and "no thread to fork" in nothing.stderr
    assert gk("goal", "Fix the discount bug", "--check", f"tests={TESTS}", "--cwd", str(workspace),
              home=goalkeeper_home).returncode == 0
    missing = gk("fork", "Write NOTES.md", "--check", "notes=test -f NOTES.md", "--cwd", str(workspace),
                 "--model", f"scripted:{tmp_path / 'none.json'}", home=goalkeeper_home)
    assert missing.returncode == 4 and "forked" not in missing.stdout  # bad flags: no fork is made
    script = write_script(tmp_path / "script.json", [step("Done.")])
    done = gk("fork", "Write NOTES.md", "--check", "notes=test -f NOTES.md", "--cwd", str(workspace),
              "--model", f"scripted:{script}", home=goalkeeper_home)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "forked thr_" in done.stdout and "Run it with: gk run --cwd " in done.stdout
