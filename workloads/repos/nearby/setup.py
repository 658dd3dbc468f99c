"""The Cython extension nearby._core, built in place with `python setup.py build_ext --inplace`."""
from Cython.Build import cythonize
from setuptools import Extension, setup

setup(ext_modules=cythonize([Extension("nearby._core", ["nearby/_core.pyx"])],
                            compiler_directives={"language_level": 3}))
