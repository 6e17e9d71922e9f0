"""The options every command shares. Kept light: the CLI imports it before any command runs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GlobalOptions:
    root: str | None = None
    json: bool = False
    strict: bool = False
    debug: bool = False
    no_color: bool = False

    def merged(self, other: GlobalOptions) -> GlobalOptions:
        """Options given before the command and after it both count."""
        return GlobalOptions(
            root=other.root or self.root,
            json=self.json or other.json,
            strict=self.strict or other.strict,
            debug=self.debug or other.debug,
            no_color=self.no_color or other.no_color,
        )


def color_allowed(options: GlobalOptions, env: dict[str, str]) -> bool:
    return not options.no_color and "NO_COLOR" not in env
