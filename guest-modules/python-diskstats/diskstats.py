"""diskstats - disk I/O rates, written for gmond's python host.

A gmond python module in the classic shape: a class holding a table of metric
metadata and one method per metric, ``metric_init(params)`` returning descriptor
dicts whose ``call_back`` dispatches to those methods, and ``metric_cleanup()``.
It runs unchanged under gmond (Python 2.7 or 3) and, through the helper
``wasmond_gmond``, under wasmond (see app.py).

It reads ``<sys_block>/<device>/stat`` for each block device (the kernel's
block-layer counters, the same fields as /proc/diskstats). Under wasmond it needs
/sys granted read-only: the entries of /sys/block are symlinks into /sys/devices,
and a module cannot follow a symlink out of a granted directory.

Params:
  devices           space-separated block devices (default: every device in
                    sys_block but loop*, ram* and zram*), e.g. "vda sda"
  sys_block         where the device directories are (default /sys/block)
  min_poll_seconds  counters are re-read at most this often, so that all the
                    metrics of one collection share one sample (default 1)
  group             the metric group (default "disk")

Rates are computed between two samples; the first collection reports 0.
"""

import logging
import os
import time

SECTOR_BYTES = 512  # the unit of the sector fields, whatever the device

# Indexes of the fields of a block device's stat file (Documentation/block/stat.rst).
READ_IOS, READ_MERGES, READ_SECTORS, READ_TICKS = 0, 1, 2, 3
WRITE_IOS, WRITE_MERGES, WRITE_SECTORS, WRITE_TICKS = 4, 5, 6, 7
IN_FLIGHT, IO_TICKS, TIME_IN_QUEUE = 8, 9, 10

# Devices left out unless named: they only mirror memory or files.
VIRTUAL_DEVICE_PREFIXES = ("loop", "ram", "zram")

log = logging.getLogger("diskstats")


class DiskStats(object):
    # metric suffix: (value_type, units, format, slope, description)
    METRICS = {
        "reads": ("double", "reads/sec", "%.2f", "both", "Reads completed per second"),
        "writes": ("double", "writes/sec", "%.2f", "both", "Writes completed per second"),
        "read_bytes": ("double", "bytes/sec", "%.0f", "both", "Bytes read per second"),
        "write_bytes": ("double", "bytes/sec", "%.0f", "both", "Bytes written per second"),
        "busy": ("float", "%", "%.1f", "both", "Share of time the device was busy with I/O"),
        "avg_wait": ("float", "ms", "%.2f", "both", "Average time one I/O took, queue included"),
        "in_flight": ("uint", "requests", "%u", "both", "I/O requests in flight now"),
    }

    def __init__(self, devices, sys_block="/sys/block", min_poll_seconds=1.0):
        self.devices = devices
        self.sys_block = sys_block.rstrip("/")
        self.min_poll_seconds = min_poll_seconds
        self.previous = None  # (time, {device: fields})
        self.current = None

    def descriptors(self, group, call_back):
        result = []
        for device in self.devices:
            for suffix, (value_type, units, fmt, slope, description) in sorted(self.METRICS.items()):
                result.append({
                    "name": "diskstat_%s_%s" % (device, suffix),
                    "call_back": call_back,
                    "time_max": 60,
                    "value_type": value_type,
                    "units": units,
                    "slope": slope,
                    "format": fmt,
                    "description": "%s of %s" % (description, device),
                    "groups": group,
                    "device": device,
                })
        return result

    def read_device(self, device):
        with open("%s/%s/stat" % (self.sys_block, device)) as stat:
            return [int(field) for field in stat.read().split()]

    def sample(self):
        """Re-reads every device unless the last sample is younger than min_poll_seconds."""
        now = time.time()
        if self.current is not None and now - self.current[0] < self.min_poll_seconds:
            return
        fields = dict((device, self.read_device(device)) for device in self.devices)
        self.previous, self.current = self.current, (now, fields)

    def delta(self, device, index):
        """(change of a counter, seconds) between the last two samples; (0, 0) before two."""
        if self.previous is None:
            return 0, 0.0
        seconds = self.current[0] - self.previous[0]
        change = self.current[1][device][index] - self.previous[1][device][index]
        return max(change, 0), seconds

    def rate(self, device, index, scale=1.0):
        change, seconds = self.delta(device, index)
        return change * scale / seconds if seconds > 0 else 0.0

    # One method per metric, named after its suffix.
    def reads(self, device):
        return self.rate(device, READ_IOS)

    def writes(self, device):
        return self.rate(device, WRITE_IOS)

    def read_bytes(self, device):
        return self.rate(device, READ_SECTORS, SECTOR_BYTES)

    def write_bytes(self, device):
        return self.rate(device, WRITE_SECTORS, SECTOR_BYTES)

    def busy(self, device):
        # io_ticks counts milliseconds during which the device had I/O in flight.
        return min(self.rate(device, IO_TICKS, 100.0 / 1000.0), 100.0)

    def avg_wait(self, device):
        ios = self.delta(device, READ_IOS)[0] + self.delta(device, WRITE_IOS)[0]
        ticks = self.delta(device, READ_TICKS)[0] + self.delta(device, WRITE_TICKS)[0]
        return float(ticks) / ios if ios else 0.0

    def in_flight(self, device):
        return self.current[1][device][IN_FLIGHT]

    def metric_handler(self, name):
        device, suffix = self.split(name)
        self.sample()
        return getattr(self, suffix)(device)

    def split(self, name):
        for device in self.devices:
            prefix = "diskstat_%s_" % device
            if name.startswith(prefix) and name[len(prefix):] in self.METRICS:
                return device, name[len(prefix):]
        raise KeyError(name)


stats = None


def physical_devices(sys_block):
    return sorted(name for name in os.listdir(sys_block)
                  if not name.startswith(VIRTUAL_DEVICE_PREFIXES))


def metric_init(params):
    global stats
    sys_block = params.get("sys_block", "/sys/block")
    devices = params.get("devices", "").split() or physical_devices(sys_block)
    if not devices:
        raise ValueError("no block device in %s: name some with param devices" % sys_block)
    stats = DiskStats(
        devices,
        sys_block=sys_block,
        min_poll_seconds=float(params.get("min_poll_seconds", 1)),
    )
    stats.sample()  # fails here, clearly, when a device is missing or not granted
    log.info("disk stats of %s from %s", " ".join(devices), stats.sys_block)
    return stats.descriptors(params.get("group", "disk"), stats.metric_handler)


def metric_cleanup():
    global stats
    stats = None


if __name__ == "__main__":
    import sys

    for descriptor in metric_init({"devices": " ".join(sys.argv[1:]), "min_poll_seconds": 0}):
        time.sleep(0.01)
        print("%s = %r" % (descriptor["name"], descriptor["call_back"](descriptor["name"])))
