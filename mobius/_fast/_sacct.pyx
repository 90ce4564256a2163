# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Parse ``sacct --noheader --parsable2 --format=SACCT_FORMAT`` output: the compiled twin.

Same rules, rows and errors as ``_sacct_py.py`` (read that one first); the tests check both
return equal rows and raise equal errors. It is built like ``_squeue.pyx``:

- no intermediate lists or line strings: it scans the str's own buffer with typed indices
  (``memchr`` for one-byte strings, typed loops for two- and four-byte ones), checks the ids,
  the state and the exit code in place and reads the exit code's two numbers as C ints;
- repeated values (state, who cancelled, reason, times, node lists) share one str per output
  (``_intern``), which saves most allocations. ``_find`` and ``_intern`` come from
  ``_scan.pxi``, included by both compiled parsers.
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

from mobius._fast._rows import (
    WHAT_SACCT_EXIT_CODE,
    WHAT_SACCT_FIELDS,
    WHAT_SACCT_JOB_ID,
    WHAT_SACCT_STATE,
    SacctRow,
)
from mobius.errors import ParseError

include "_scan.pxi"

__all__ = ["parse_sacct"]


cdef enum:
    _FIELDS = 9
    _SLOTS = 1024  # per interned column; a power of two
    _INTERNED = 6  # interned columns: state, cancelled by, reason, start, end, nodes
    _MAX_DIGITS = 9  # of each number of the exit code


def parse_sacct(str text not None) -> list:
    """The rows of sacct output, in output order."""
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
    cdef Py_ssize_t bar[_FIELDS - 1]  # where the first eight '|' of the line are
    cdef Py_ssize_t state_end = 0, colon = 0
    cdef list rows = []
    cdef object row_type = SacctRow
    cdef object what, cancelled_by, exit_code, exit_signal
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
        for k in range(_FIELDS - 1):
            j = _find(kind, data, j, eol, u'|')
            if j < 0:
                what = WHAT_SACCT_FIELDS
                break
            bar[k] = j
            j += 1
        if what is None:
            if not (
                _valid_job_id(kind, data, pos, bar[0], False)
                and _valid_job_id(kind, data, bar[0] + 1, bar[1], True)
            ):
                what = WHAT_SACCT_JOB_ID
            else:
                state_end = _state_end(kind, data, bar[1] + 1, bar[2])
                if state_end < 0:
                    what = WHAT_SACCT_STATE
                else:
                    colon = _exit_colon(kind, data, bar[2] + 1, bar[3])
                    if colon == -1:
                        what = WHAT_SACCT_EXIT_CODE
        if what is not None:
            raise ParseError(what, PyUnicode_Substring(text, pos, eol), lineno)
        if state_end == bar[2]:
            cancelled_by = ""
        else:
            # the uid, after " by "
            cancelled_by = _intern(values, hashes, 1, text, kind, data, state_end + 4, bar[2])
        if colon == -2:  # empty exit code
            exit_code = exit_signal = None
        else:
            exit_code = _digits(kind, data, bar[2] + 1, colon)
            exit_signal = _digits(kind, data, colon + 1, bar[3])
        rows.append(
            row_type(
                PyUnicode_Substring(text, pos, bar[0]),
                PyUnicode_Substring(text, bar[0] + 1, bar[1]),
                _intern(values, hashes, 0, text, kind, data, bar[1] + 1, state_end),
                cancelled_by,
                exit_code,
                exit_signal,
                _intern(values, hashes, 2, text, kind, data, bar[3] + 1, bar[4]),
                _intern(values, hashes, 3, text, kind, data, bar[4] + 1, bar[5]),
                _intern(values, hashes, 4, text, kind, data, bar[5] + 1, bar[6]),
                _intern(values, hashes, 5, text, kind, data, bar[6] + 1, bar[7]),
                PyUnicode_Substring(text, bar[7] + 1, eol),
            )
        )
        pos = eol + 1
    return rows


cdef bint _at_word(
    int kind, const void* data, Py_ssize_t i, Py_ssize_t end, const char* word
) noexcept nogil:
    """Whether ``data[i:]`` starts with the ASCII ``word`` (within ``end``)."""
    cdef Py_ssize_t k = 0
    while word[k] != 0:
        if i + k >= end or PyUnicode_READ(kind, data, i + k) != <Py_UCS4>word[k]:
            return False
        k += 1
    return True


cdef bint _valid_step(int kind, const void* data, Py_ssize_t i, Py_ssize_t end) noexcept nogil:
    """Whether ``data[i:end]`` fully matches
    (?:\\.(?:[0-9]+|batch|extern|interactive|TDB)(?:\\+[0-9]+)?)?"""
    cdef Py_ssize_t j
    if i == end:
        return True
    if PyUnicode_READ(kind, data, i) != u'.':
        return False
    i += 1
    j = _skip_digits(kind, data, i, end)
    if j == i:
        if _at_word(kind, data, i, end, b"batch"):
            j = i + 5
        elif _at_word(kind, data, i, end, b"extern"):
            j = i + 6
        elif _at_word(kind, data, i, end, b"interactive"):
            j = i + 11
        elif _at_word(kind, data, i, end, b"TDB"):
            j = i + 3
        else:
            return False
    if j == end:
        return True
    if PyUnicode_READ(kind, data, j) != u'+':  # het step component
        return False
    j += 1
    return j < end and _skip_digits(kind, data, j, end) == end


cdef bint _valid_job_id(
    int kind, const void* data, Py_ssize_t start, Py_ssize_t end, bint raw
) noexcept nogil:
    """Whether ``data[start:end]`` fully matches the JobID pattern of ``_sacct_py`` (or, if
    ``raw``, the JobIDRaw one: digits and a step)."""
    cdef Py_ssize_t j = _skip_digits(kind, data, start, end)
    cdef Py_ssize_t k, range_start
    cdef Py_UCS4 c
    if j == start:
        return False
    if raw or j == end:
        return _valid_step(kind, data, j, end)
    c = PyUnicode_READ(kind, data, j)
    if c == u'+':  # het job component
        j += 1
        k = _skip_digits(kind, data, j, end)
        return k > j and _valid_step(kind, data, k, end)
    if c != u'_':
        return _valid_step(kind, data, j, end)
    j += 1
    if j == end:
        return False
    if PyUnicode_READ(kind, data, j) != u'[':  # array task
        k = _skip_digits(kind, data, j, end)
        return k > j and _valid_step(kind, data, k, end)
    j += 1  # array tasks: a non-empty range, then ']'
    range_start = j
    while j < end:
        c = PyUnicode_READ(kind, data, j)
        if not (
            _is_digit(c) or c == u',' or c == u':' or c == u'%' or c == u'-' or c == u'.'
        ):
            break
        j += 1
    if j == range_start or j == end or PyUnicode_READ(kind, data, j) != u']':
        return False
    return _valid_step(kind, data, j + 1, end)


cdef Py_ssize_t _state_end(
    int kind, const void* data, Py_ssize_t i, Py_ssize_t end
) noexcept nogil:
    """Where the state in ``data[i:end]`` ends, if it fully matches [A-Z_]+(?: by [0-9]+)?;
    else -1. The state is ``data[i:result]``; if result < end, the uid follows `` by ``."""
    cdef Py_ssize_t start = i
    cdef Py_ssize_t state_end
    cdef Py_UCS4 c
    while i < end:
        c = PyUnicode_READ(kind, data, i)
        if not (u'A' <= c <= u'Z' or c == u'_'):
            break
        i += 1
    if i == start:
        return -1
    if i == end:
        return i
    state_end = i
    if not _at_word(kind, data, i, end, b" by "):
        return -1
    i += 4
    if i == end or _skip_digits(kind, data, i, end) != end:
        return -1
    return state_end


cdef Py_ssize_t _exit_colon(
    int kind, const void* data, Py_ssize_t i, Py_ssize_t end
) noexcept nogil:
    """Where the ':' of the exit code ``data[i:end]`` is, if it fully matches
    [0-9]{1,9}:[0-9]{1,9}; -2 if it is empty, -1 if it is bad."""
    cdef Py_ssize_t colon, stop
    if i == end:
        return -2
    colon = _skip_digits(kind, data, i, end)
    if colon == i or colon - i > _MAX_DIGITS or colon == end:
        return -1
    if PyUnicode_READ(kind, data, colon) != u':':
        return -1
    stop = _skip_digits(kind, data, colon + 1, end)
    if stop == colon + 1 or stop != end or stop - colon - 1 > _MAX_DIGITS:
        return -1
    return colon


cdef object _digits(int kind, const void* data, Py_ssize_t i, Py_ssize_t end):
    """The int that the (at most nine) ASCII digits ``data[i:end]`` spell."""
    cdef long value = 0
    while i < end:
        value = value * 10 + <long>PyUnicode_READ(kind, data, i) - 48  # '0'
        i += 1
    return value

