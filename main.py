"""`python main.py` starts the console, like the `gooseui` command."""

from gooseui.cli import main

if __name__ in {"__main__", "__mp_main__"}:
    main()
