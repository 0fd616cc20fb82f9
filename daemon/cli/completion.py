"""``imgsearchd completion bash``: a bash completion script made from the argument parser.

Chosen over argcomplete (not a dependency here): the script is static, costs nothing at
each Tab (no Python start-up), and is regenerated from the parser so it cannot drift.
It completes commands, their subcommands and options, choices, and file names elsewhere.
"""

from __future__ import annotations

import argparse
import shlex

TEMPLATE = """# bash completion for imgsearchd; load with: source <(imgsearchd completion bash)
_imgsearchd() {
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"
    local cmd="${COMP_WORDS[1]}" words="" sub=""
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W %(commands)s -- "$cur"))
        return
    fi
    case "$cmd $prev" in
%(choices)s
    esac
    case "$cmd" in
%(options)s
    esac
    if [ -n "$sub" ] && [ "$COMP_CWORD" -eq 2 ]; then
        COMPREPLY=($(compgen -W "$sub" -- "$cur"))
    elif [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$words" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}
complete -o filenames -o bashdefault -F _imgsearchd imgsearchd
"""


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _fixed_positionals(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        a
        for a in parser._actions
        if not a.option_strings and a.choices and not isinstance(a, argparse._SubParsersAction)
    ]


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return [opt for action in parser._actions for opt in action.option_strings if opt.startswith("--")]


def bash_script(parser: argparse.ArgumentParser) -> str:
    """The completion script for ``parser`` (the whole ``imgsearchd`` parser)."""
    commands = _subcommands(parser)
    options, choices = [], []
    for name, sub in commands.items():
        nested = list(_subcommands(sub))
        # a first positional with fixed values (``completion bash``) completes like a subcommand
        nested += [str(c) for a in _fixed_positionals(sub) for c in a.choices or ()]
        words = set(_options(sub))
        for child in _subcommands(sub).values():
            words.update(_options(child))
        options.append(
            f"        {name}) words={shlex.quote(' '.join(sorted(words)))}; sub={shlex.quote(' '.join(nested))} ;;"
        )
        for action in sub._actions:
            if action.choices and action.option_strings:
                for opt in action.option_strings:
                    values = shlex.quote(" ".join(str(c) for c in action.choices))
                    choices.append(f'        "{name} {opt}") COMPREPLY=($(compgen -W {values} -- "$cur")); return ;;')
    return TEMPLATE % {
        "commands": shlex.quote(" ".join(commands)),
        "choices": "\n".join(choices) or "        *) ;;",
        "options": "\n".join(options),
    }
