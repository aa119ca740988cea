"""The one escape for anything a user names (run folders, recipes, class names, paths, hardware strings) on
its way into a report, a leaderboard or an index page: Markdown rendered to HTML by nbconvert, or HTML."""

from __future__ import annotations

# HTML's specials and Markdown's own markup, as numeric character references: shown as the character itself,
# never as a tag, an attribute's end, emphasis, a code span, a link, math, a heading or a table cell's edge.
REFERENCES = {ord(c): f"&#{ord(c)};" for c in "&<>\"'\\`*_{}[]()#!|~$"}


def escape(value) -> str:
    """``value`` as text that shows as itself in HTML (also inside a quoted attribute) and in Markdown (also
    inside a table cell); line breaks become spaces, so it cannot start a new Markdown block."""
    return " ".join(str(value).split()).translate(REFERENCES)
