"""Unit tests of the Python 2 translation, run natively with fissix on the path
(make -C guest-modules check puts target/python-deps there)."""
import unittest

import wasmond_py2

PYTHON2 = '''\
import string
def metric_init(params):
    global d
    d = {'a': 1}
    try:
        x = 0755
    except StandardError, e:
        print "failed", e
    for k, v in d.iteritems():
        if d.has_key(k):
\t    print >>f, k
    return [file('/proc/uptime').read()]
'''


class TranslateTest(unittest.TestCase):
    def test_the_usual_fixers(self):
        text, warnings = wasmond_py2.translate(PYTHON2, "m")
        compile(text, "m.py", "exec")
        for fixed in ["x = 0o755", "except Exception as e:", 'print("failed", e)',
                      "for k, v in d.items():", "if k in d:", "print(k, file=f)"]:
            self.assertIn(fixed, text)
        self.assertEqual(warnings, [])
        # Lines keep their numbers, so errors point into the original file.
        self.assertEqual(text.splitlines()[5].strip(), "x = 0o755")

    def test_tabs_count_as_python_2_read_them(self):
        text, _ = wasmond_py2.translate("if 1:\n    if 2:\n\tx = 1\n", "m")
        self.assertEqual(text, "if 1:\n    if 2:\n        x = 1\n")
        kept = 's = """a\n\tb"""\n'
        self.assertEqual(wasmond_py2.expand_indentation_tabs(kept), kept)

    def test_what_cannot_be_parsed_names_its_line(self):
        with self.assertRaises(wasmond_py2.TranslationError) as caught:
            wasmond_py2.translate("x = 1\ny = (\ndef f(:\n", "m")
        self.assertEqual(caught.exception.line, 3)

    def test_what_the_fixers_cannot_convert_is_reported_with_its_line(self):
        _, warnings = wasmond_py2.translate("x = 1\nraise 'oops'\n", "m")
        self.assertEqual(warnings, [(2, "could not convert: raise 'oops' "
                                        "(Python 3 does not support string exceptions)")])

    def test_values_of_different_types_order_as_in_python_2(self):
        source = ("ok = []\n"
                  "for value in ['12', None, 3, []]:\n"
                  "    ok.append(value >= 0)\n"
                  "print 'chained', 1 < 2 < 3\n"
                  "assert 1 <= 2.5 and not 'b' < 'a'\n")
        text, warnings = wasmond_py2.translate(source, "m")
        self.assertEqual(warnings, [])
        self.assertIn("_py2_ge(value, 0)", text)
        self.assertIn("1 < 2 < 3", text)  # a chain is left as it is
        namespace = dict(wasmond_py2.BUILTINS)
        exec(compile(text, "m.py", "exec"), namespace)
        # Python 2: a str and a list order after every number, None before.
        self.assertEqual(namespace["ok"], [True, False, True, True])
        # Same-type comparisons are Python 3's, errors inside them included.
        with self.assertRaises(TypeError):
            namespace["_py2_lt"]([1], ["a"])


if __name__ == "__main__":
    unittest.main()
