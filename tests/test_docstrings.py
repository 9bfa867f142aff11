"""Tests for the docstring -> summary pairs of examples/datasets.py (``load_docstring_pairs``).

The loader reads Python source trees; the tests write small ones (real ``.py`` files, packages
with ``__init__.py``, a test folder, a file that does not parse) under ``tmp_path`` and check
the module names, the cleaning of each docstring, the module-disjoint split, deduplication and
the cache. The real sources (the standard library, numpy, scikit-learn) are read by the
``slow`` test.
"""
import os
import re
import textwrap

import pytest

from examples import datasets
from examples.datasets import DocPair, MissingDatasetError, load_docstring_pairs


def write_tree(root, files):
    """Write ``{relative path: source}`` under ``root``; returns ``root`` as a str."""
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")
    return str(root)


NUMPYDOC = '''
    def mean(a, axis=None):
        """Compute the arithmetic mean
        along the specified axis.

        Returns the average of the array elements.   The average is taken over
        the flattened array by default.

        .. versionadded:: 1.7.0
            Some directive text.

        Parameters
        ----------
        a : array_like
            Array containing numbers.

        See Also
        --------
        average : Weighted average.

        Examples
        --------
        >>> mean([1, 2])
        1.5
        """
'''

ONE_PACKAGE = {
    "pkg/__init__.py": '"""The package."""\n',
    "pkg/stats.py": NUMPYDOC,
    "pkg/sub/__init__.py": "",
    "pkg/sub/shapes.py": '''
        class Shape:
            """A shape. It has an area and a perimeter, e.g. a square.

            Shapes are immutable.
            """

            def area(self):
                """Return the area.

                >>> Shape().area()
                0

                The area of an empty shape is zero.
                """

            def _nothing(self):
                """No body here."""

        if True:
            try:
                async def fetch():
                    """Fetch the shape asynchronously.

                    Waits for the server.
                    """
            except ImportError:
                pass
    ''',
    "pkg/tests/test_stats.py": '''
        def test_mean():
            """A test that should be skipped.

            Tests are not read.
            """
    ''',
    "pkg/test_private.py": '''
        def f():
            """Skipped: a test file.

            By its name.
            """
    ''',
    "pkg/broken.py": 'def f(:\n    """Does not parse.\n\n    Skipped."""\n',
    "pkg/lib-dynload/extra.py": '''
        def g():
            """In a folder that is no package.

            Skipped.
            """
    ''',
}


def test_pairs_from_a_package_tree_are_named_and_cleaned(tmp_path):
    root = write_tree(tmp_path, ONE_PACKAGE)
    pairs = load_docstring_pairs(roots=[os.path.join(root, "pkg")], fractions=(1, 0, 0),
                                 cache=False)
    assert pairs["valid"] == [] and pairs["test"] == []
    got = {(p.module, p.name): p for p in pairs["train"]}
    assert sorted(got) == [("pkg.stats", "mean"), ("pkg.sub.shapes", "Shape"),
                           ("pkg.sub.shapes", "Shape.area"), ("pkg.sub.shapes", "fetch")]
    mean = got["pkg.stats", "mean"]
    assert isinstance(mean, DocPair)
    # a wrapped first line is the summary; the directive, See Also and Examples are cut
    assert mean.summary == "Compute the arithmetic mean along the specified axis."
    assert mean.body == ("Returns the average of the array elements. The average is taken over "
                         "the flattened array by default. Parameters a : array_like Array "
                         "containing numbers.")
    # a first line of two sentences: the first is the summary ("e.g." does not end it)
    shape = got["pkg.sub.shapes", "Shape"]
    assert shape.summary == "A shape."
    assert shape.body == "It has an area and a perimeter, e.g. a square. Shapes are immutable."
    # the doctest and its output are dropped, the text after them stays
    assert got["pkg.sub.shapes", "Shape.area"].body == "The area of an empty shape is zero."
    assert got["pkg.sub.shapes", "fetch"] == DocPair("pkg.sub.shapes", "fetch",
                                                     "Waits for the server.",
                                                     "Fetch the shape asynchronously.")


def test_a_root_without_init_names_modules_from_the_root(tmp_path):
    """The standard library's layout: ``json/decoder.py`` is module ``json.decoder``."""
    root = write_tree(tmp_path / "lib", {
        "json/__init__.py": 'def dumps():\n    """Serialize to JSON.\n\n    Returns a str.\n    """\n',
        "json/decoder.py": 'def scan():\n    """Scan a string.\n\n    From the start.\n    """\n',
        "os.py": 'def walk():\n    """Walk a tree.\n\n    Top down by default.\n    """\n'})
    found = datasets.read_docstrings(root, cache=False)
    assert [(m, n) for m, n, _ in found] == [("json", "dumps"), ("json.decoder", "scan"),
                                              ("os", "walk")]


def test_summary_and_body_rules():
    split = datasets.split_docstring
    assert split("Only a summary.") is None
    assert split("Only a summary.\n\n>>> f()\n1") is None               # nothing but a doctest
    assert split("Process a HELP command. Argument:\n- file: where") == (
        "Process a HELP command.", "Argument: - file: where")
    # a summary that ends with no full stop at a blank line, and a numpydoc heading after it
    assert split("Make things\nParameters\n----------\nx : int\n    The thing.") == (
        "Make things", "Parameters x : int The thing.")
    assert split("Call os.path.join. Then more.\nBody text.") == (
        "Call os.path.join.", "Then more. Body text.")
    assert split("Summary.\n\n" + "word " * 100, max_body_words=5) == ("Summary.",
                                                                        "word word word word word")
    assert datasets.first_sentence("No end at all") == "No end at all"
    assert datasets.first_sentence("Ends here! Not here.") == "Ends here!"
    assert datasets.clean_docstring_body(["a  b", "", "Notes", "-----", "cut", "Returns",
                                          "-------", "out : int", ".. [1] ref", "   more"]) == \
        "a b Returns out : int"


def many_modules(count=60):
    """``count`` modules ``m0 .. m{count-1}`` of a package, each with two documented functions."""
    files = {"pkg/__init__.py": ""}
    for i in range(count):
        files[f"pkg/m{i}.py"] = (
            f'def f{i}():\n    """Do thing number {i}.\n\n    The body of f{i} is here.\n    """\n\n'
            f'def g{i}():\n    """Undo thing number {i}.\n\n    The body of g{i}, longer.\n    """\n')
    return files


def test_the_split_is_by_module_and_fixed_by_the_seed(tmp_path):
    root = os.path.join(write_tree(tmp_path, many_modules()), "pkg")
    pairs = load_docstring_pairs(roots=[root], cache=False)
    modules = {name: {p.module for p in split} for name, split in pairs.items()}
    assert not (modules["train"] & modules["valid"] or modules["train"] & modules["test"]
                or modules["valid"] & modules["test"])
    assert sum(len(s) for s in pairs.values()) == 120
    assert all(len(s) > 0 for s in pairs.values())            # 60 modules at 80/10/10
    for name, split in pairs.items():
        assert all(datasets.module_split(p.module, 0) == name for p in split)
        assert all(len([q for q in split if q.module == p.module]) == 2 for p in split)
    again = load_docstring_pairs(roots=[root], cache=False)
    other = load_docstring_pairs(roots=[root], cache=False, seed=1)
    assert again == pairs and other["test"] != pairs["test"]
    assert len(load_docstring_pairs(roots=[root], cache=False, fractions=(0, 0, 1))["test"]) == 120
    limited = load_docstring_pairs(roots=[root], cache=False, limit=3)
    assert [len(s) for s in limited.values()] == [3, 3, 3]
    assert limited["train"] == pairs["train"][:3]


def test_duplicates_are_dropped(tmp_path):
    doc = '"""Do the thing.\n\n    Exactly the same body.\n    """'
    other = '"""Do another thing.\n\n    Exactly the same body.\n    """'
    # find three modules: two in one split and one in another (the split is by a hash)
    names = [f"m{i}" for i in range(200)]
    by_split = {s: [n for n in names if datasets.module_split(f"pkg.{n}") == s]
                for s in ("train", "test")}
    a, b = by_split["train"][:2]
    c = by_split["test"][0]
    files = {"pkg/__init__.py": "",
             f"pkg/{a}.py": f"def f():\n    {doc}\n\ndef g():\n    {doc}\n\ndef h():\n    {other}\n",
             f"pkg/{b}.py": f"def f():\n    {doc}\n",
             f"pkg/{c}.py": f"def k():\n    {other}\n\ndef fresh():\n    {doc.replace('same', 'new')}\n"}
    root = os.path.join(write_tree(tmp_path, files), "pkg")
    pairs = load_docstring_pairs(roots=[root], cache=False)
    # the same (body, summary) once; the same body with another summary in the same split stays;
    # the body in another split goes
    assert [(p.module, p.name) for p in pairs["train"]] == [(f"pkg.{a}", "f"), (f"pkg.{a}", "h")]
    assert [(p.module, p.name) for p in pairs["test"]] == [(f"pkg.{c}", "fresh")]


def test_reading_is_cached_and_a_changed_file_is_read_again(tmp_path, monkeypatch):
    root = os.path.join(write_tree(tmp_path / "src", many_modules(3)), "pkg")
    cache = tmp_path / "cache"
    first = load_docstring_pairs(roots=[root], cache_dir=str(cache), fractions=(1, 0, 0))
    assert len(os.listdir(cache / "docstrings")) == 1
    calls = []
    real = datasets._docstrings_of
    monkeypatch.setattr(datasets, "_docstrings_of", lambda *a: calls.append(a) or real(*a))
    assert load_docstring_pairs(roots=[root], cache_dir=str(cache), fractions=(1, 0, 0)) == first
    assert calls == []
    with open(os.path.join(root, "m1.py"), "a") as f:
        f.write('\ndef extra():\n    """An extra function.\n\n    Added later on.\n    """\n')
    changed = load_docstring_pairs(roots=[root], cache_dir=str(cache), fractions=(1, 0, 0))
    assert len(calls) == 4 and len(changed["train"]) == 7
    for name in os.listdir(cache / "docstrings"):
        (cache / "docstrings" / name).write_text("{not json")
    assert len(load_docstring_pairs(roots=[root], cache_dir=str(cache), fractions=(1, 0, 0))
               ["train"]) == 7                                    # a damaged cache is read again
    assert len(calls) == 8


def test_errors_name_the_fix(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="load_docstring_pairs: fractions must be three"):
        load_docstring_pairs(roots=[str(tmp_path)], fractions=(0.5, 0.5))
    with pytest.raises(MissingDatasetError, match="pip install scikit-learn"):
        monkeypatch.setattr(datasets.importlib.util, "find_spec", lambda name: None)
        load_docstring_pairs(sources=("stdlib", "sklearn"))
    with pytest.raises(MissingDatasetError, match="no .py files under"):
        load_docstring_pairs(roots=[str(tmp_path)], cache=False)


@pytest.mark.slow
def test_real_docstring_pairs(tmp_path):
    pairs = load_docstring_pairs(cache_dir=str(tmp_path))
    sizes = {name: len(split) for name, split in pairs.items()}
    assert sizes["train"] > 4000 and sizes["valid"] > 300 and sizes["test"] > 300, sizes
    modules = [{p.module for p in split} for split in pairs.values()]
    assert not (modules[0] & modules[1] or modules[0] & modules[2] or modules[1] & modules[2])
    tops = {p.module.split(".")[0] for split in pairs.values() for p in split}
    assert {"numpy", "sklearn", "json", "asyncio"} <= tops
    bodies = [p.body for split in pairs.values() for p in split]
    assert not [b for b in bodies if re.search(r"(^|\s)>>> ", b)]       # no doctest prompts
    assert all(1 <= len(b.split()) <= 64 for b in bodies)
