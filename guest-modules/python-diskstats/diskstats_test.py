"""Unit tests of diskstats.py, run natively: make -C guest-modules check."""
import os
import tempfile
import unittest

import diskstats

# Fields of a block device's stat file: reads, merges, sectors, ticks, writes, ...
FIRST = [100, 0, 800, 50, 10, 0, 80, 30, 2, 1000, 1200]
SECOND = [150, 0, 1200, 100, 30, 0, 280, 90, 0, 1500, 1900]


class DiskStatsTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        os.mkdir(os.path.join(self.dir.name, "vdx"))
        self.clock = [1000.0]
        diskstats.time.time = lambda: self.clock[0]

    def tearDown(self):
        self.dir.cleanup()
        diskstats.metric_cleanup()

    def write(self, fields):
        with open(os.path.join(self.dir.name, "vdx", "stat"), "w") as stat:
            stat.write(" ".join(str(f) for f in fields) + "\n")

    def values(self, descriptors):
        return dict((d["name"], d["call_back"](d["name"])) for d in descriptors)

    def test_descriptors_follow_the_gmond_shape(self):
        self.write(FIRST)
        descriptors = diskstats.metric_init({"devices": "vdx", "sys_block": self.dir.name})
        names = sorted(d["name"] for d in descriptors)
        self.assertIn("diskstat_vdx_read_bytes", names)
        self.assertEqual(len(names), len(diskstats.DiskStats.METRICS))
        for d in descriptors:
            self.assertEqual(d["groups"], "disk")
            self.assertEqual(d["device"], "vdx")
            self.assertTrue(callable(d["call_back"]))

    def test_rates_between_two_samples(self):
        self.write(FIRST)
        descriptors = diskstats.metric_init({"devices": "vdx", "sys_block": self.dir.name})
        self.assertEqual(self.values(descriptors)["diskstat_vdx_reads"], 0.0)
        self.write(SECOND)
        self.clock[0] += 10
        values = self.values(descriptors)
        self.assertAlmostEqual(values["diskstat_vdx_reads"], 5.0)
        self.assertAlmostEqual(values["diskstat_vdx_writes"], 2.0)
        self.assertAlmostEqual(values["diskstat_vdx_read_bytes"], 400 * 512 / 10.0)
        self.assertAlmostEqual(values["diskstat_vdx_write_bytes"], 200 * 512 / 10.0)
        self.assertAlmostEqual(values["diskstat_vdx_busy"], 5.0)
        self.assertAlmostEqual(values["diskstat_vdx_avg_wait"], 110 / 70.0)
        self.assertEqual(values["diskstat_vdx_in_flight"], 0)

    def test_one_sample_serves_a_whole_collection(self):
        self.write(FIRST)
        descriptors = diskstats.metric_init({"devices": "vdx", "sys_block": self.dir.name,
                                             "min_poll_seconds": "5"})
        self.write(SECOND)
        self.clock[0] += 1
        self.assertEqual(self.values(descriptors)["diskstat_vdx_in_flight"], 2)

    def test_missing_device_fails_init(self):
        with self.assertRaises(EnvironmentError):
            diskstats.metric_init({"devices": "nosuchdev", "sys_block": self.dir.name})

    def test_devices_default_to_the_physical_ones(self):
        self.write(FIRST)
        for name in ("loop0", "ram1", "zram0", "sda"):
            os.mkdir(os.path.join(self.dir.name, name))
            with open(os.path.join(self.dir.name, name, "stat"), "w") as stat:
                stat.write(" ".join(str(f) for f in FIRST))
        descriptors = diskstats.metric_init({"sys_block": self.dir.name})
        self.assertEqual(sorted(set(d["device"] for d in descriptors)), ["sda", "vdx"])

    def test_no_device_at_all_fails_init(self):
        os.rmdir(os.path.join(self.dir.name, "vdx"))
        with self.assertRaises(ValueError):
            diskstats.metric_init({"sys_block": self.dir.name})


if __name__ == "__main__":
    unittest.main()
