# Scanning helpers shared by the compiled parsers (``include``d, so they stay inline and
# module-private): find a character in a str's raw buffer, digits, and the per-column interning
# of repeated values. The including module defines ``_SLOTS`` and cimports what these use.

cdef extern from "Python.h":
    # cpython/unicode.pxd declares it without nogil and with a non-const data pointer.
    Py_UCS4 PyUnicode_READ(int kind, const void* data, Py_ssize_t index) nogil


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
