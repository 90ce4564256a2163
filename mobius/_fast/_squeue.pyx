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

__all__ = ["parse_squeue"]


cdef extern from "Python.h":
    # cpython/unicode.pxd declares it without nogil and with a non-const data pointer.
    Py_UCS4 PyUnicode_READ(int kind, const void* data, Py_ssize_t index) nogil


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


cdef inline Py_ssize_t _find(
    int kind, const void* data, Py_ssize_t start, Py_ssize_t end, Py_UCS4 ch
) noexcept nogil:
    """Index of the first ``ch`` in ``data[start:end]``, or -1."""
    cdef const char* found
    cdef const uint16_t* data2
    cdef const uint32_t* data4
    cdef Py_ssize_t i
    if kind == PyUnicode_1BYTE_KIND:
        if start >= end:
            return -1
        found = <const char*>memchr(<const char*>data + start, <int>ch, <size_t>(end - start))
        if found == NULL:
            return -1
        return found - <const char*>data
    if kind == PyUnicode_2BYTE_KIND:
        data2 = <const uint16_t*>data
        for i in range(start, end):
            if data2[i] == ch:
                return i
        return -1
    data4 = <const uint32_t*>data
    for i in range(start, end):
        if data4[i] == ch:
            return i
    return -1


cdef inline bint _is_digit(Py_UCS4 c) noexcept nogil:
    return u'0' <= c <= u'9'  # ASCII only, like [0-9]


cdef inline Py_ssize_t _skip_digits(
    int kind, const void* data, Py_ssize_t i, Py_ssize_t end
) noexcept nogil:
    while i < end and _is_digit(PyUnicode_READ(kind, data, i)):
        i += 1
    return i


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


cdef object _intern(
    list values,
    uint64_t* hashes,
    Py_ssize_t column,
    str text,
    int kind,
    const void* data,
    Py_ssize_t start,
    Py_ssize_t end,
):
    """``text[start:end]``, or an equal str met earlier in this column of this output.

    State, reason, times and node lists repeat a lot within one output (``PENDING``,
    ``Priority``, ``N/A``, the allocation's nodes); sharing one str between equal values saves
    allocations (the rows are equal either way) and memory while the poller keeps the rows.
    Each column has ``_SLOTS`` direct-mapped slots: the hashes in a C array, so that a miss
    touches no object, and the strs in ``values``. A slot is filled once and never evicted:
    evicting would touch cold objects, and the first values of a column are as good as any.
    """
    cdef Py_ssize_t length = end - start
    cdef const char* chars = <const char*>data + start * kind
    cdef size_t nbytes = <size_t>length * kind
    cdef size_t done = 0
    cdef uint64_t word = 0
    cdef uint64_t h = <uint64_t>nbytes
    cdef Py_ssize_t slot
    cdef PyObject* cached
    if length == 0:
        return ""
    while done + 8 <= nbytes:
        memcpy(&word, chars + done, 8)
        h = (h ^ word) * 0x9E3779B97F4A7C15ULL
        done += 8
    if done < nbytes:  # the last 1..7 bytes, zero-padded
        word = 0
        memcpy(&word, chars + done, nbytes - done)
        h = (h ^ word) * 0x9E3779B97F4A7C15ULL
    h = (h ^ (h >> 29)) | 1  # never 0, which marks an empty slot
    slot = column * _SLOTS + <Py_ssize_t>((h >> 17) & (_SLOTS - 1))
    if hashes[slot] == h:
        cached = PyList_GET_ITEM(values, slot)
        if (
            PyUnicode_GET_LENGTH(<object>cached) == length
            and PyUnicode_KIND(<object>cached) == kind
            and memcmp(PyUnicode_DATA(<object>cached), chars, nbytes) == 0
        ):
            return <object>cached
    value = PyUnicode_Substring(text, start, end)
    if hashes[slot] == 0:
        hashes[slot] = h
        values[slot] = value
    return value
