# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Parse ``squeue --noheader --format=SQUEUE_FORMAT`` output: the compiled twin.

Same rules, rows and errors as ``_squeue_py.py`` (read that one first); the tests check both
return equal rows and raise equal errors. What makes this one faster:

- no intermediate lists or line strings: it scans the str's own buffer with typed indices
  (``memchr`` for one-byte strings, typed loops for two- and four-byte ones) and checks the job
  id and state in place, so a line costs its seven field strings and one row;
- repeated values share one str (``_intern``), which saves most of the remaining allocations:
  allocating and first touching memory is now what parsing costs.
"""

from cpython.list cimport PyList_GET_ITEM
from cpython.mem cimport PyMem_Calloc, PyMem_Free
from cpython.object cimport PyObject
from cpython.unicode cimport (
    PyUnicode_1BYTE_KIND,
    PyUnicode_2BYTE_KIND,
    PyUnicode_DATA,
    PyUnicode_GET_LENGTH,
    PyUnicode_KIND,
    PyUnicode_Substring,
)
from libc.stdint cimport uint16_t, uint32_t, uint64_t
from libc.string cimport memchr, memcmp, memcpy

from mobius._fast._rows import WHAT_FIELDS, WHAT_JOB_ID, WHAT_STATE, SqueueRow
from mobius.errors import ParseError

include "_scan.pxi"

__all__ = ["parse_squeue"]


cdef enum:
    _SLOTS = 1024  # per interned column; a power of two
    _INTERNED = 5  # interned columns: state, reason, start, end, nodes


def parse_squeue(str text not None) -> list:
    """The rows of squeue output, in output order."""
    cdef list values = [""] * (_INTERNED * _SLOTS)
    cdef uint64_t* hashes = <uint64_t*>PyMem_Calloc(_INTERNED * _SLOTS, sizeof(uint64_t))
    if hashes == NULL:
        raise MemoryError()
    try:
        return _parse(text, values, hashes)
    finally:
        PyMem_Free(hashes)


cdef list _parse(str text, list values, uint64_t* hashes):
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(text)
    cdef int kind = PyUnicode_KIND(text)
    cdef const void* data = PyUnicode_DATA(text)
    cdef Py_ssize_t pos = 0  # start of the current line
    cdef Py_ssize_t eol, j, k
    cdef Py_ssize_t lineno = 0
    cdef Py_ssize_t bar[6]  # where the first six '|' of the line are
    cdef list rows = []
    cdef object row_type = SqueueRow
    cdef object what
    while pos < n:
        lineno += 1
        eol = _find(kind, data, pos, n, u'\n')
        if eol < 0:
            eol = n
        if eol == pos:  # empty line
            pos += 1
            continue
        what = None
        j = pos
        for k in range(6):
            j = _find(kind, data, j, eol, u'|')
            if j < 0:
                what = WHAT_FIELDS
                break
            bar[k] = j
            j += 1
        if what is None:
            if not _valid_job_id(kind, data, pos, bar[0]):
                what = WHAT_JOB_ID
            elif not _valid_state(kind, data, bar[0] + 1, bar[1]):
                what = WHAT_STATE
        if what is not None:
            raise ParseError(what, PyUnicode_Substring(text, pos, eol), lineno)
        rows.append(
            row_type(
                PyUnicode_Substring(text, pos, bar[0]),
                _intern(values, hashes, 0, text, kind, data, bar[0] + 1, bar[1]),
                _intern(values, hashes, 1, text, kind, data, bar[1] + 1, bar[2]),
                _intern(values, hashes, 2, text, kind, data, bar[2] + 1, bar[3]),
                _intern(values, hashes, 3, text, kind, data, bar[3] + 1, bar[4]),
                _intern(values, hashes, 4, text, kind, data, bar[4] + 1, bar[5]),
                PyUnicode_Substring(text, bar[5] + 1, eol),
            )
        )
        pos = eol + 1
    return rows


cdef bint _valid_job_id(
    int kind, const void* data, Py_ssize_t start, Py_ssize_t end
) noexcept nogil:
    """Whether ``data[start:end]`` fully matches [0-9]+(?:_[0-9]+|_\\[[0-9,:%-]+\\]|\\+[0-9]+)?"""
    cdef Py_ssize_t j = _skip_digits(kind, data, start, end)
    cdef Py_ssize_t range_start
    cdef Py_UCS4 c
    if j == start:
        return False
    if j == end:
        return True
    c = PyUnicode_READ(kind, data, j)
    j += 1
    if c == u'+':  # het job component
        return j < end and _skip_digits(kind, data, j, end) == end
    if c != u'_' or j == end:
        return False
    if PyUnicode_READ(kind, data, j) != u'[':  # array task
        return _skip_digits(kind, data, j, end) == end
    j += 1  # pending array tasks: a non-empty range, then ']' as the last character
    range_start = j
    while j < end:
        c = PyUnicode_READ(kind, data, j)
        if not (_is_digit(c) or c == u',' or c == u':' or c == u'%' or c == u'-'):
            break
        j += 1
    return j > range_start and j == end - 1 and PyUnicode_READ(kind, data, j) == u']'


cdef bint _valid_state(int kind, const void* data, Py_ssize_t i, Py_ssize_t end) noexcept nogil:
    """Whether ``data[i:end]`` fully matches [A-Z_]+"""
    cdef Py_UCS4 c
    if i == end:
        return False
    while i < end:
        c = PyUnicode_READ(kind, data, i)
        if not (u'A' <= c <= u'Z' or c == u'_'):
            return False
        i += 1
    return True

