"""Unit tests of wasmond_gmond, run natively against the bindings componentize-py
generates (make -C guest-modules check puts them on PYTHONPATH)."""
import unittest
import types as pytypes
from unittest import mock

from componentize_py_types import Err, Ok
from wit_world.imports import types

import wasmond_gmond


def module(descriptors, cleanup=None):
    """A stand-in gmond module whose metric_init returns `descriptors`."""
    fake = pytypes.SimpleNamespace(received=None)

    def metric_init(params):
        fake.received = params
        return descriptors

    fake.metric_init = metric_init
    if cleanup is not None:
        fake.metric_cleanup = cleanup
    return fake


def world(fake):
    return wasmond_gmond.export(fake)()


class DescriptorTest(unittest.TestCase):
    def test_gmond_defaults_and_extras(self):
        fake = module([{"name": "m", "call_back": lambda n: 1, "units": "u",
                        "groups": "a, b", "custom_key": 7}])
        [d] = world(fake).init([("k", "1"), ("k", "2")])
        self.assertEqual(fake.received, {"k": "2"})  # the last param wins, as in gmond
        self.assertEqual(d.value_type, types.ValueType.UINT32)
        self.assertEqual(d.slope, types.Slope.BOTH)
        self.assertEqual((d.format, d.time_max, d.units), ("%u", 60, "u"))
        self.assertEqual(d.groups, ["a", "b"])
        self.assertEqual(d.extra, [("custom_key", "7")])

    def test_every_value_type_name(self):
        for name, expected in [("uint", "UINT32"), ("int", "INT32"), ("float", "FLOAT"),
                               ("double", "DOUBLE"), ("string", "STRING"), ("uint16", "UINT16")]:
            [d] = world(module([{"name": "m", "call_back": len, "value_type": name}])).init([])
            self.assertEqual(d.value_type, types.ValueType[expected])

    def test_bad_descriptors_are_init_errors(self):
        for entry, fragment in [({"call_back": len}, "no name"),
                                ({"name": "m"}, "call_back"),
                                ({"name": "m", "call_back": len, "value_type": "long"}, "value_type"),
                                ({"name": "m", "call_back": len, "slope": "up"}, "slope"),
                                ({"name": "m", "call_back": len, "time_max": "soon"}, "time_max")]:
            with self.assertRaises(Err) as caught:
                world(module([entry])).init([])
            self.assertIn(fragment, caught.exception.value)

    def test_metric_init_exception_is_an_init_error(self):
        def metric_init(params):
            raise IOError("no such file")
        with self.assertRaises(Err) as caught:
            world(pytypes.SimpleNamespace(metric_init=metric_init)).init([])
        self.assertIn("metric_init failed: OSError: no such file", caught.exception.value)


class HandlerTest(unittest.TestCase):
    def start(self, value_type, call_back):
        w = world(module([{"name": "m", "call_back": call_back, "value_type": value_type}]))
        w.init([])
        return w

    def test_values_take_the_declared_case(self):
        self.assertEqual(self.start("uint", lambda n: 7).handler("m"), types.MetricValue_Uint32(7))
        self.assertEqual(self.start("double", lambda n: 2).handler("m"), types.MetricValue_Double(2.0))
        self.assertEqual(self.start("string", lambda n: 3).handler("m"), types.MetricValue_String("3"))

    def test_integers_wrap_like_a_c_cast(self):
        self.assertEqual(self.start("uint", lambda n: -1).handler("m").value, 0xFFFFFFFF)
        self.assertEqual(self.start("uint", lambda n: 2 ** 32 + 5).handler("m").value, 5)
        self.assertEqual(self.start("int", lambda n: 2 ** 31).handler("m").value, -2 ** 31)
        self.assertEqual(self.start("int8", lambda n: 255).handler("m").value, -1)

    def test_failures_are_handler_errors(self):
        def broken(name):
            raise KeyError(name)
        for call_back, fragment in [(broken, "call_back failed: KeyError"),
                                    (lambda n: None, "no value"),
                                    (lambda n: "abc", "returned 'abc'")]:
            with self.assertRaises(Err) as caught:
                self.start("uint", call_back).handler("m")
            self.assertIn(fragment, caught.exception.value)

    def test_a_failure_names_the_metric_and_where(self):
        def broken(name):
            return {}[name]
        with self.assertRaises(Err) as caught:
            self.start("uint", broken).handler("m")
        message = caught.exception.value
        self.assertTrue(message.startswith("m: call_back failed: KeyError: 'm' (at "), message)
        self.assertIn("wasmond_gmond_test.py:", message)
        self.assertIn("in broken", message)

    def test_a_duplicate_name_keeps_the_first(self):
        fake = module([{"name": "m", "call_back": lambda n: 1},
                       {"name": "m", "call_back": lambda n: 2, "value_type": "string"}])
        w = world(fake)
        with self.assertLogs("wasmond_gmond", "WARNING") as logged:
            [d] = w.init([])
        self.assertIn("metric m is declared twice", logged.output[0])
        self.assertEqual(d.value_type, types.ValueType.UINT32)
        self.assertEqual(w.handler("m"), types.MetricValue_Uint32(1))

    def test_handle_each_answers_every_metric_asked_in_order(self):
        def broken(name):
            raise KeyError(name)
        fake = module([{"name": "a", "call_back": lambda n: -1},
                       {"name": "b", "call_back": broken},
                       {"name": "c", "call_back": lambda n: 3, "value_type": "double"},
                       {"name": "d", "call_back": lambda n: 4, "value_type": "string"}])
        answers = []
        collect = pytypes.SimpleNamespace(
            answer=lambda position, value: answers.append(("answer", position, value)),
            answer_number=lambda position, value: answers.append(("number", position, value)),
            answer_text=lambda position, value: answers.append(("text", position, value)))
        span = pytypes.SimpleNamespace
        with mock.patch.object(wasmond_gmond, "host_collect", collect):
            state = wasmond_gmond.GmondModule(fake)
            state.init([])
            state.handle_each([span(first=2, count=1), span(first=0, count=2),
                               span(first=3, count=1), span(first=7, count=1)])
        self.assertEqual([position for _, position, _ in answers], [2, 0, 1, 3, 7])
        self.assertEqual(answers[0], ("number", 2, 3.0))
        self.assertEqual(answers[1], ("number", 0, 0xFFFFFFFF), "a uint wraps like a C cast")
        self.assertEqual(answers[2][0], "answer")
        self.assertIsInstance(answers[2][2], Err)
        self.assertIn("b: call_back failed: KeyError", answers[2][2].value)
        self.assertEqual(answers[3], ("text", 3, "4"))
        self.assertEqual(answers[4][2].value, "no metric at position 7")

    def test_unknown_metric(self):
        with self.assertRaises(Err):
            self.start("uint", len).handler("other")

    def test_cleanup_calls_metric_cleanup(self):
        calls = []
        w = world(module([], cleanup=lambda: calls.append(1)))
        w.init([])
        w.cleanup()
        self.assertEqual(calls, [1])


if __name__ == "__main__":
    unittest.main()
