"""Command line: a dispatch table in main.py, one small module per command."""


def add_overrides(parser, help_text: str = "Override a config key (repeatable).") -> None:
    """The `--set KEY=VALUE` option every config-reading command takes (collected into args.overrides)."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help_text)
