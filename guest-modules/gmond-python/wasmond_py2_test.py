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


if __name__ == "__main__":
    unittest.main()
