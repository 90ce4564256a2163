# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Diff two squeue snapshots: the compiled twin.

Same rules and results as ``_diff_py.py`` (read that one first); the tests check both agree.
What makes this one faster:

- typed loops over the list and both dicts with the C API: no iterators, no ``get`` calls;
- rows are read in place: ``SqueueRow`` is a msgspec Struct whose fields are slots, so their
  offsets are read once from the slot descriptors and each row's name and fields are loaded
  without attribute lookups; fields compare by identity first, and the parser shares one str
  between equal state, reason, time and node values, so most of them never reach a string
  comparison. Any other object (a subclass, a row of another type) takes the generic path.
"""

from cpython.dict cimport PyDict_GetItem, PyDict_Next, PyDict_SetItem
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.object cimport Py_EQ, Py_NE, Py_TYPE, PyObject, PyObject_RichCompareBool, PyTypeObject

from mobius._fast._rows import SqueueRow

__all__ = ["diff_rows"]


cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member


cdef enum:
    _NFIELDS = 7

cdef Py_ssize_t _offsets[_NFIELDS]  # of each field in a SqueueRow, in declaration order
cdef Py_ssize_t _name_offset = -1  # -1: the layout is unknown, always take the generic path
cdef PyTypeObject* _row_type = <PyTypeObject*>SqueueRow


cdef void _learn_layout() except *:
    global _name_offset
    member = type(SqueueRow.__dict__["name"])
    fields = SqueueRow.__struct_fields__
    if len(fields) != _NFIELDS:
        return
    for i, field in enumerate(fields):
        descriptor = SqueueRow.__dict__[field]
        if type(descriptor) is not member:
            return
        _offsets[i] = (<PyMemberDescrObject*>descriptor).d_member.offset
    _name_offset = _offsets[fields.index("name")]


_learn_layout()


cdef inline PyObject* _slot(object row, Py_ssize_t offset) noexcept:
    return (<PyObject**>((<char*><PyObject*>row) + offset))[0]


cdef bint _differ(object old, object new) except -1:
    """``old != new``, as the Struct would answer, in place when both are plain SqueueRows."""
    cdef PyObject* a
    cdef PyObject* b
    cdef Py_ssize_t i
    if old is new:
        return False
    if _name_offset < 0 or Py_TYPE(old) != _row_type or Py_TYPE(new) != _row_type:
        return PyObject_RichCompareBool(old, new, Py_NE)
    for i in range(_NFIELDS):
        a = _slot(old, _offsets[i])
        b = _slot(new, _offsets[i])
        if a == NULL or b == NULL:  # a field never set: let the Struct decide
            return PyObject_RichCompareBool(old, new, Py_NE)
        if a != b and not PyObject_RichCompareBool(<object>a, <object>b, Py_EQ):
            return True
    return False


def diff_rows(dict previous not None, list rows not None) -> tuple:
    """``(snapshot, changed)``: the rows keyed by job name, and the names that changed or left."""
    cdef Py_ssize_t i, n = PyList_GET_SIZE(rows)
    cdef dict snapshot = {}
    cdef list changed = []
    cdef Py_ssize_t pos = 0
    cdef PyObject* key
    cdef PyObject* value
    cdef PyObject* old
    cdef object row
    for i in range(n):
        row = <object>PyList_GET_ITEM(rows, i)
        if (
            _name_offset >= 0
            and Py_TYPE(row) == _row_type
            and _slot(row, _name_offset) != NULL
        ):
            PyDict_SetItem(snapshot, <object>_slot(row, _name_offset), row)
        else:
            PyDict_SetItem(snapshot, row.name, row)
    while PyDict_Next(snapshot, &pos, &key, &value):
        old = PyDict_GetItem(previous, <object>key)
        if old == NULL or _differ(<object>old, <object>value):
            changed.append(<object>key)
    pos = 0
    while PyDict_Next(previous, &pos, &key, &value):
        if PyDict_GetItem(snapshot, <object>key) == NULL:
            changed.append(<object>key)
    return snapshot, changed
