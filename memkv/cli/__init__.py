"""The `memkv` command line: one module per subcommand (see memkv.cli.main)."""
