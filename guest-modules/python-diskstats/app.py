"""The component's entry point: diskstats.py, unchanged, exported through wasmond_gmond."""
import diskstats
from wasmond_gmond import export

WitWorld = export(diskstats)
