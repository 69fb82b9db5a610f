//! `Ticket`, the object every admission returns, as a plain C-API type.
//!
//! A `#[pyclass]` instance costs about 28 ns to create and free on the
//! development machine (a lock around PyO3's freelist each way,
//! `object.__new__` with an empty tuple, a garbage-collected header), a fifth
//! of a whole try_acquire + commit from Python. A ticket holds no Python
//! references, so it needs none of that: this type is one `PyObject_Malloc`,
//! one `PyObject_Init` and one `PyObject_Free`, and nothing here can fail
//! except allocation. Instances are made only by [`new`]; Python cannot
//! construct, subclass or modify them.

use std::ffi::{c_int, c_void};
use std::mem::size_of;
use std::ptr::{self, addr_of, addr_of_mut};

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

use crate::Ticket;

/// An instance: the object header, then the core's ticket.
#[repr(C)]
struct TicketObject {
    ob_base: ffi::PyObject,
    ticket: Ticket,
}

static TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// Create the type and add it to the module as `Ticket`.
pub(super) fn add_to(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let ty = TYPE.get_or_try_init(py, || create_type(py))?;
    m.add("Ticket", ty.clone_ref(py))
}

fn create_type(py: Python<'_>) -> PyResult<Py<PyType>> {
    // CPython keeps pointers to the getset table; the type lives as long as
    // the process, so the table is leaked once.
    let getset: &'static mut [ffi::PyGetSetDef] = Box::leak(Box::new([
        ffi::PyGetSetDef {
            name: c"tokens".as_ptr(),
            get: Some(tokens),
            set: None,
            doc: c"Tokens reserved on each key.".as_ptr(),
            closure: ptr::null_mut(),
        },
        ffi::PyGetSetDef {
            name: c"settled".as_ptr(),
            get: Some(settled),
            set: None,
            doc: c"Whether the ticket was committed or released.".as_ptr(),
            closure: ptr::null_mut(),
        },
        ffi::PyGetSetDef::default(),
    ]));
    let mut slots = [
        slot(
            ffi::Py_tp_dealloc,
            dealloc as ffi::destructor as *mut c_void,
        ),
        slot(ffi::Py_tp_repr, repr as ffi::reprfunc as *mut c_void),
        slot(ffi::Py_nb_bool, truthy as ffi::inquiry as *mut c_void),
        slot(ffi::Py_tp_getset, getset.as_mut_ptr().cast()),
        slot(
            ffi::Py_tp_doc,
            c"An admission: settle it once with `commit` or `release`."
                .as_ptr()
                .cast_mut()
                .cast(),
        ),
        slot(0, ptr::null_mut()),
    ];
    let mut spec = ffi::PyType_Spec {
        name: c"switchboard._ratelimit.Ticket".as_ptr(),
        basicsize: c_int::try_from(size_of::<TicketObject>()).expect("a small struct"),
        itemsize: 0,
        flags: (ffi::Py_TPFLAGS_DEFAULT
            | ffi::Py_TPFLAGS_IMMUTABLETYPE
            | ffi::Py_TPFLAGS_DISALLOW_INSTANTIATION) as _,
        slots: slots.as_mut_ptr(),
    };
    // SAFETY: the spec and its slots are valid for the call; the name, the
    // doc and the getset table are 'static.
    let ty = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyType_FromSpec(&mut spec))? };
    Ok(ty.cast_into::<PyType>()?.unbind())
}

fn slot(slot: c_int, pfunc: *mut c_void) -> ffi::PyType_Slot {
    ffi::PyType_Slot { slot, pfunc }
}

#[inline]
fn type_ptr(py: Python<'_>) -> *mut ffi::PyTypeObject {
    TYPE.get(py)
        .expect("the module creates Ticket before any limiter exists")
        .as_ptr()
        .cast()
}

/// A new `Ticket` owning `ticket`.
#[inline]
pub(super) fn new(py: Python<'_>, ticket: Ticket) -> PyResult<Bound<'_, PyAny>> {
    let ty = type_ptr(py);
    // SAFETY: the allocation is as large as `TicketObject`, pymalloc aligns
    // to 16 bytes, the ticket is written before the object is initialised
    // and handed out, and `PyObject_Init` sets the header (and takes a
    // reference to the heap type, given back by `dealloc`).
    unsafe {
        let obj = ffi::PyObject_Malloc(size_of::<TicketObject>()).cast::<TicketObject>();
        if obj.is_null() {
            ffi::PyErr_NoMemory();
            return Err(PyErr::fetch(py));
        }
        addr_of_mut!((*obj).ticket).write(ticket);
        ffi::PyObject_Init(obj.cast(), ty);
        Ok(Bound::from_owned_ptr(py, obj.cast()))
    }
}

/// The core ticket inside a `Ticket`, or `TypeError`.
#[inline]
pub(super) fn get<'a>(obj: &'a Bound<'_, PyAny>) -> PyResult<&'a Ticket> {
    // SAFETY: an object of exactly this type (it cannot be subclassed) is a
    // `TicketObject`, alive while `obj` is borrowed.
    unsafe {
        if ffi::Py_TYPE(obj.as_ptr()) == type_ptr(obj.py()) {
            return Ok(&*addr_of!((*obj.as_ptr().cast::<TicketObject>()).ticket));
        }
    }
    Err(PyTypeError::new_err(format!(
        "ticket must be a Ticket, got {}",
        obj.get_type()
            .name()
            .map_or_else(|_| "?".into(), |n| n.to_string())
    )))
}

/// The ticket of a `Ticket` instance.
///
/// # Safety
/// `obj` is a live instance of the type.
unsafe fn ticket<'a>(obj: *mut ffi::PyObject) -> &'a Ticket {
    unsafe { &*addr_of!((*obj.cast::<TicketObject>()).ticket) }
}

unsafe extern "C" fn dealloc(obj: *mut ffi::PyObject) {
    unsafe {
        let ty = ffi::Py_TYPE(obj);
        ptr::drop_in_place(addr_of_mut!((*obj.cast::<TicketObject>()).ticket));
        ffi::PyObject_Free(obj.cast());
        ffi::Py_DECREF(ty.cast());
    }
}

unsafe extern "C" fn tokens(obj: *mut ffi::PyObject, _: *mut c_void) -> *mut ffi::PyObject {
    unsafe { ffi::PyLong_FromUnsignedLongLong(ticket(obj).tokens()) }
}

unsafe extern "C" fn settled(obj: *mut ffi::PyObject, _: *mut c_void) -> *mut ffi::PyObject {
    unsafe { ffi::PyBool_FromLong(ticket(obj).is_settled().into()) }
}

unsafe extern "C" fn truthy(_: *mut ffi::PyObject) -> c_int {
    1
}

unsafe extern "C" fn repr(obj: *mut ffi::PyObject) -> *mut ffi::PyObject {
    let t = unsafe { ticket(obj) };
    let text = format!(
        "Ticket(tokens={}, keys_held={}, settled={})",
        t.tokens(),
        t.keys_held(),
        if t.is_settled() { "True" } else { "False" }
    );
    // SAFETY: valid UTF-8 of the given length.
    unsafe { ffi::PyUnicode_FromStringAndSize(text.as_ptr().cast(), text.len() as ffi::Py_ssize_t) }
}
