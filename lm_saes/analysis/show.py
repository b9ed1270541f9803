"""`lm-saes show`: a feature's top contexts in the terminal, tokens highlighted by activation.

Pure rendering of stored documents: the highlight of a token grows with its activation relative
to the feature's maximum (ANSI 256-colour backgrounds on a terminal; ``[[token]]`` marks and the
value elsewhere), and each context's peak value is printed beside it.
"""

from __future__ import annotations

# Backgrounds from pale to strong orange (xterm-256 colours).
SHADES = (230, 223, 222, 216, 215, 209, 208, 202)
RESET = "\033[0m"


def visible(token: str) -> str:
    """A token as printed: newlines and tabs shown as symbols."""
    return token.replace("\n", "\u21b5").replace("\t", "\u21e5")


def highlight(tokens: list[str], acts: list[float], max_activation: float, color: bool) -> str:
    parts = []
    for token, act in zip(tokens, acts):
        text = visible(token)
        if act <= 0 or max_activation <= 0:
            parts.append(text)
        elif color:
            shade = SHADES[min(len(SHADES) - 1, int(act / max_activation * len(SHADES)))]
            parts.append(f"\033[48;5;{shade}m\033[38;5;16m{text}{RESET}")
        else:
            parts.append(f"[[{text}]]({act:.2f})")
    return "".join(parts)


def render_feature(doc: dict, dictionary: str, n_contexts: int = 10, color: bool = False) -> str:
    """The feature's headline numbers, top logits and top contexts, as printable text."""
    top = doc.get("max_activation", 0.0)
    lines = [
        f"{dictionary} feature {doc['index']}: density {doc['density']:.3g}, max {top:.3g}, "
        f"mean {doc.get('mean_activation', 0.0):.3g}, fired on {doc.get('n_fired', 0):,} tokens",
    ]
    logits = doc.get("logits") or {}
    if logits.get("positive"):
        lines.append("  promotes: " + "  ".join(visible(t["token"]) for t in logits["positive"][:8]))
        lines.append("  suppresses: " + "  ".join(visible(t["token"]) for t in logits["negative"][:8]))
    contexts = doc.get("top_contexts", [])[:n_contexts]
    if not contexts:
        lines.append("  never fired on the analyzed tokens")
    for example in contexts:
        text = highlight(example["tokens"], example["acts"], top, color)
        lines.append(f"  {example['max']:8.3f}  {text}")
    return "\n".join(lines)


def render_list(features: list[dict], dictionary: str, total: int) -> str:
    """A table of feature summaries (index, density, max activation)."""
    lines = [f"{dictionary}: {total:,} features; the {len(features)} densest:",
             f"  {'index':>7}  {'density':>10}  {'max act':>9}"]
    for f in features:
        lines.append(f"  {f['index']:>7}  {f['density']:>10.4g}  {f['max_activation']:>9.3f}")
    lines.append("show one: lm-saes show DICTIONARY INDEX")
    return "\n".join(lines)
