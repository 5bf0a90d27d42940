"""The main file NiceGUI's test fixtures run: the console, configured from the environment."""

from gooseui import app
from gooseui.config import load_settings

app.run(load_settings())
