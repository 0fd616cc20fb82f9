"""``imgsearchd completion bash|zsh|fish``: a completion script made from the argument parser.

Written here rather than taken from a library: argcomplete runs Python on every Tab (half a
second with this package's imports), shtab writes bash and zsh but not fish, and either would
be a dependency for about 200 lines. The scripts are static (no Python start-up on each
Tab) and made from the parser, so they cannot drift from it. Each completes the commands,
their subcommands and options (with their help in zsh and fish), option choices, and file
names where a command takes paths.
"""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Callable, Iterator

SHELLS = ("bash", "zsh", "fish")
# A value named like these is a path: complete file (or folder) names for it.
PATHLIKE = re.compile(r"PATH|DIR|FILE|FOLDER|IMAGE|TERM")

BASH = """# bash completion for imgsearchd; load with: source <(imgsearchd completion bash)
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

ZSH_HEAD = """#compdef imgsearchd
# zsh completion for imgsearchd; load with: source <(imgsearchd completion zsh) (after compinit),
# or save it as _imgsearchd in a folder of $fpath.
"""
ZSH_TAIL = """
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    _imgsearchd "$@"
else
    compdef _imgsearchd imgsearchd
fi
"""


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _helps(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each subcommand's one line of help."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {a.dest: a.help or "" for a in action._choices_actions}
    return {}


def _positionals(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not a.option_strings and not isinstance(a, argparse._SubParsersAction)]


def _fixed_positionals(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in _positionals(parser) if a.choices]


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return [opt for action in parser._actions for opt in action.option_strings if opt.startswith("--")]


def _takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0


def _is_path(action: argparse.Action) -> bool:
    return bool(PATHLIKE.search(str(action.metavar or action.dest).upper()))


def _help(action: argparse.Action) -> str:
    text = action.help if action.help and action.help != argparse.SUPPRESS else ""
    return " ".join(text.split())


def _walk(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every (sub)command as (its words after ``imgsearchd``, its parser), parents first."""
    yield path, parser
    for name, sub in _subcommands(parser).items():
        yield from _walk(sub, (*path, name))


# -- bash ------------------------------------------------------------------------------------


def bash_script(parser: argparse.ArgumentParser) -> str:
    """The bash script for ``parser`` (the whole ``imgsearchd`` parser)."""
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
        seen: set[str] = set()  # an option a subcommand shares with its parent (``--kind``): the first
        for action in [a for parser in (sub, *_subcommands(sub).values()) for a in parser._actions]:
            if action.choices and action.option_strings:
                for opt in [o for o in action.option_strings if o not in seen]:
                    seen.add(opt)
                    values = shlex.quote(" ".join(str(c) for c in action.choices))
                    choices.append(f'        "{name} {opt}") COMPREPLY=($(compgen -W {values} -- "$cur")); return ;;')
    return BASH % {
        "commands": shlex.quote(" ".join(commands)),
        "choices": "\n".join(choices) or "        *) ;;",
        "options": "\n".join(options),
    }


# -- zsh -------------------------------------------------------------------------------------


def _zsh_escape(text: str, colons: bool = False) -> str:
    """Text inside an ``_arguments`` spec's brackets; ``colons``: a name or message between colons too."""
    text = text.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
    return text.replace(":", "\\:") if colons else text


def _zsh_action(action: argparse.Action) -> str:
    if action.choices:
        return "(" + " ".join(shlex.quote(str(c)) for c in action.choices) + ")"
    if _is_path(action):
        return "_files -/" if "DIR" in str(action.metavar or "").upper() else "_files"
    return " "


def _zsh_specs(parser: argparse.ArgumentParser) -> list[str]:
    specs = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        if action.option_strings:
            many = "*" if isinstance(action, argparse._AppendAction) else ""
            for opt in action.option_strings:
                spec = f"{many}{opt}[{_zsh_escape(_help(action))}]"
                if _takes_value(action):
                    spec += f":{_zsh_escape(str(action.metavar or action.dest), True)}:{_zsh_action(action)}"
                specs.append(spec)
        else:
            where = "*" if action.nargs in ("*", "+") else ""
            specs.append(f"{where}:{_zsh_escape(str(action.metavar or action.dest), True)}:{_zsh_action(action)}")
    return specs


def _zsh_function(path: tuple[str, ...], parser: argparse.ArgumentParser) -> str:
    name = "_" + "_".join(("imgsearchd", *path))
    subs = _subcommands(parser)
    specs = " \\\n        ".join(shlex.quote(s) for s in _zsh_specs(parser))
    if not subs:
        return f"{name}() {{\n    _arguments -s \\\n        {specs}\n}}\n"
    items = " ".join(shlex.quote(f"{_zsh_escape(n, True)}:{h}") for n, h in _helps(parser).items())
    cases = "\n".join(f"        {n}) {name}_{n} ;;" for n in subs)
    return (
        f"{name}() {{\n    local curcontext=$curcontext state line\n"
        f"    _arguments -C \\\n        {specs} \\\n        ': :->command' \\\n        '*:: :->arguments'\n"
        f"    case $state in\n    command)\n        local -a commands=({items})\n"
        f"        _describe -t commands 'imgsearchd command' commands ;;\n"
        f"    arguments)\n        case $line[1] in\n{cases}\n        esac ;;\n    esac\n}}\n"
    )


def zsh_script(parser: argparse.ArgumentParser) -> str:
    """The zsh script: a function per (sub)command, ``_arguments`` with each option's help."""
    return ZSH_HEAD + "\n".join(_zsh_function(path, sub) for path, sub in _walk(parser)) + ZSH_TAIL


# -- fish ------------------------------------------------------------------------------------


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish_condition(path: tuple[str, ...], parser: argparse.ArgumentParser) -> str:
    """When a line of ``path``'s completions applies: its words seen, none of its subcommands yet."""
    if not path:
        return "__fish_use_subcommand"
    tests = [f"__fish_seen_subcommand_from {word}" for word in path]
    if _subcommands(parser):
        tests.append("not __fish_seen_subcommand_from " + " ".join(_subcommands(parser)))
    return "; and ".join(tests)


def _fish_lines(path: tuple[str, ...], parser: argparse.ArgumentParser) -> Iterator[str]:
    head = f"complete -c imgsearchd -n {_fish_quote(_fish_condition(path, parser))}"
    for name, text in _helps(parser).items():
        yield f"{head} -f -a {_fish_quote(name)} -d {_fish_quote(text)}"
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        if not action.option_strings:
            if action.choices:
                yield f"{head} -f -a {_fish_quote(' '.join(str(c) for c in action.choices))}"
            elif _is_path(action):
                yield f"{head} -F"
            continue
        flags = " ".join(f"-l {o[2:]}" if o.startswith("--") else f"-s {o[1:]}" for o in action.option_strings)
        value = ""
        if _takes_value(action):
            value = " -x -a " + _fish_quote(" ".join(str(c) for c in action.choices)) if action.choices else " -r"
            value += " -F" if _is_path(action) and not action.choices else ""
        yield f"{head} {flags}{value} -d {_fish_quote(_help(action))}"


def fish_script(parser: argparse.ArgumentParser) -> str:
    """The fish script: ``complete`` lines, each for the (sub)command its condition names."""
    lines = ["# fish completion for imgsearchd; load with: imgsearchd completion fish | source", ""]
    lines.append("complete -c imgsearchd -f")  # no file names unless a command takes paths (-F below)
    for path, sub in _walk(parser):
        lines += _fish_lines(path, sub)
    return "\n".join(lines) + "\n"


SCRIPTS: dict[str, Callable[[argparse.ArgumentParser], str]] = {
    "bash": bash_script,
    "zsh": zsh_script,
    "fish": fish_script,
}


def script_for(shell: str, parser: argparse.ArgumentParser) -> str:
    """The completion script for ``shell`` (one of ``SHELLS``)."""
    return SCRIPTS[shell](parser)
