"""The `metanode` command line: the only package that imports typer, and through
``cli.console`` the only one that imports rich."""
