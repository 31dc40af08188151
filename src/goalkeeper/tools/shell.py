"""The `shell` tool: one bash command in the workspace, with a timeout and a process-group kill.

Under a sandbox policy (`context.sandbox`) the command runs confined by bubblewrap; what the sandbox
refuses (a read-only file system, no network) shows in the command's own output.
"""

from __future__ import annotations

from goalkeeper.errors import SandboxError
from goalkeeper.sandbox.bwrap import run_confined
from goalkeeper.tools.base import Count, Tool, ToolArgs, ToolContext, ToolResult
from goalkeeper.tools.replies import refusal, text_result


class ShellArgs(ToolArgs):
    """`shell`'s arguments."""

    command: str
    timeout_s: Count | None = None


class ShellTool(Tool[ShellArgs]):
    """Runs `command` with bash in the workspace; ok means exit code 0."""

    name = "shell"
    description = ("Run a bash command in the workspace; returns the exit code and combined stdout+stderr. "
                   "The .git directory belongs to the harness and is read-only: git status, diff and log work, "
                   "but commits, branch switches and ref changes fail; the harness commits your work on the "
                   "goal branch after each turn.")
    Args = ShellArgs

    async def run(self, args: ShellArgs, context: ToolContext) -> ToolResult:
        """Run the command; a non-zero exit or a timeout is `ok=False` with the output still shown."""
        if not args.command.strip():
            return refusal("argument 'command' is empty; give a bash command to run")
        asked = args.timeout_s
        timeout_s = min(
            float(asked) if asked is not None else context.default_timeout_s, context.max_timeout_s
        )
        try:
            result = await run_confined(context.sandbox, args.command, context.workspace, timeout_s, env=context.env)
        except SandboxError as error:
            return ToolResult(output=f"the command was not run: {error}", ok=False, facts={"sandbox_error": True})
        header = f"exit code: {result.exit_code}\n"
        if result.timed_out:
            header += f"timed out after {timeout_s:g}s; the process group was killed\n"
        facts = {"exit_code": result.exit_code, "timed_out": result.timed_out,
                 "duration_s": round(result.duration_s, 3)}
        # Cut as one text with its header, so the marker's offsets are offsets into the stored full output.
        return text_result(header + (result.output or "(no output)\n"), context,
                           ok=result.exit_code == 0 and not result.timed_out, facts=facts)
