"""A goal's workspace made from a remote, and its checkpoints and report pushed back (the Temporal engine).

A worker clones the remote (`--repo URL|PATH`, at `--ref REV`) into its own folder for the goal. Every
checkpoint commit of the goal branch is pushed to the remote, so another worker can take the goal over from
the last one pushed: it clones again and checks the goal branch out there. The report lands as a commit of its
own (REPORT.md and report.json, its parent the goal branch's head) at `refs/goalkeeper/reports/<goal id>`,
so it never adds a commit to the goal branch.

Only these functions use a transport, through the same hardened git as the rest (workspace/git.py): the file,
https and ssh protocols are allowed for the one command, never `ext::` or any other that runs a program. The
remote is always named by the URL the goal was submitted with, never by the workspace's own config (the
model's): a changed `origin` cannot redirect a push.
"""

from __future__ import annotations

from pathlib import Path

from goalkeeper.errors import WorkspaceError
from goalkeeper.workspace.git import commit_of, git, identity_flags, probe

#: Command-line config for the commands that talk to the remote (the specific keys beat `protocol.allow`).
_TRANSPORT = ("-c", "protocol.file.allow=always", "-c", "protocol.https.allow=always",
              "-c", "protocol.ssh.allow=always")

#: Where a goal's report lands in the remote.
REPORTS_REF = "refs/goalkeeper/reports/"


def clone(remote: str, dest: Path, ref: str | None, branch: str | None) -> None:
    """Clone `remote` into `dest`: on the goal `branch` as last pushed when the remote has it (a takeover),
    else at `ref` (default: the remote's HEAD), detached, where the goal branch will start."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    git(dest.parent, *_TRANSPORT, "clone", "-q", "--no-checkout", "--", remote, dest.name)
    if branch is not None and probe(dest, "rev-parse", "-q", "--verify", f"refs/remotes/origin/{branch}").stdout:
        git(dest, "checkout", "-q", "-B", branch, f"refs/remotes/origin/{branch}")
        return
    try:
        start = commit_of(dest, ref or "HEAD")
    except WorkspaceError:
        start = commit_of(dest, f"refs/remotes/origin/{ref}")  # a branch of the remote, not checked out here
    git(dest, "checkout", "-q", "--detach", start)


def remote_has(remote: str, ref: str | None) -> str:
    """The commit `ref` (default HEAD) names in `remote`; one clear error when the remote cannot be read."""
    done = probe(Path.cwd(), *_TRANSPORT, "ls-remote", "--", remote, ref or "HEAD")
    if done.returncode != 0:
        raise WorkspaceError(f"cannot read the repository {remote}: {done.stderr.strip()}",
                             hint="pass --repo with a path or URL git can clone (a bare repository is fine)")
    lines = done.stdout.split()
    if not lines:
        if ref is not None and len(ref) >= 7 and all(c in "0123456789abcdef" for c in ref.lower()):
            return ref  # a commit id: ls-remote lists only refs; the clone checks it out
        raise WorkspaceError(f"the repository {remote} has no {ref or 'HEAD'}",
                             hint="pass --ref with a branch, tag or commit of that repository")
    return lines[0]


def pushed_head(remote: str, branch: str) -> str | None:
    """The goal branch's head in the remote, or None when it has not been pushed (or cannot be read)."""
    done = probe(Path.cwd(), *_TRANSPORT, "ls-remote", "--", remote, f"refs/heads/{branch}")
    words = done.stdout.split() if done.returncode == 0 else []
    return words[0] if words else None


def push_branch(workspace: Path, remote: str, branch: str) -> None:
    """Push the goal branch to the remote. Never forced: a worker that lost the goal cannot overwrite the
    checkpoints of the one that took it over."""
    git(workspace, *_TRANSPORT, "push", "-q", "--no-verify", "--", remote, f"refs/heads/{branch}:refs/heads/{branch}")


def push_report(workspace: Path, remote: str, goal_id: str, branch: str, files: dict[str, str]) -> tuple[str, str]:
    """Commit `files` (name → text) as the goal's report, its parent the goal branch's head, and push it to
    `refs/goalkeeper/reports/<goal id>` (replacing an older report of the same goal); (ref, commit)."""
    entries = []
    for name, text in sorted(files.items()):
        blob = git(workspace, "hash-object", "-w", "--stdin", stdin=text).strip()
        entries.append(f"100644 blob {blob}\t{name}\n")
    tree = git(workspace, "mktree", stdin="".join(entries)).strip()
    parent = commit_of(workspace, f"refs/heads/{branch}")
    commit = git(workspace, *identity_flags(workspace), "commit-tree", tree, "-p", parent,
                 "-m", f"goalkeeper: report of {goal_id}").strip()
    ref = REPORTS_REF + goal_id
    git(workspace, *_TRANSPORT, "push", "-q", "--force", "--no-verify", "--", remote, f"{commit}:{ref}")
    return ref, commit


def branch_head(workspace: Path, branch: str) -> str | None:
    """The goal branch's head commit in the workspace, or None before it exists."""
    done = probe(workspace, "rev-parse", "-q", "--verify", f"refs/heads/{branch}^{{commit}}")
    return done.stdout.strip() or None
