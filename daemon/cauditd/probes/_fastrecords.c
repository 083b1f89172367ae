/* The syscall ring's most frequent records (open, fork, exit) decoded in C.
 *
 * cauditd/probes/records.py is the reference: this module decodes exactly as its
 * decode_open, decode_fork and decode_exit do (tests/probes/test_fastrecords.py compares the
 * two on every kind of record), and hands every other kind to it. What it knows of the
 * records comes from there too: the offset and type of each value (from records.py's
 * struct formats), the syscall names, the event classes and their fields. Only which value
 * goes to which field is written here, in the order records.py unpacks them.
 *
 * Events are built as the dataclasses' __init__ would build them, without calling it: the
 * object is allocated, then every slot is set, to the decoded value or to the field's default
 * (records.py checks that the classes are slotted dataclasses with nothing in __post_init__).
 * That is most of the gain: __init__ with 19 keyword arguments took ~800 ns of the ~2.5 us
 * Python spent decoding an open.
 *
 * Built by hatch_build.py when the package is installed (gcc and the Python headers); without
 * it, records.py decodes everything.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <string.h>

#ifndef CAUDITD_SOURCE_SHA
#define CAUDITD_SOURCE_SHA ""
#endif

#define MAX_ITEMS 32
#define MAX_FIELDS 48
#define MAX_NR 1024

/* ---- record layouts: (offset, struct code, size) of each unpacked value ------------------ */

typedef struct {
    Py_ssize_t offset;
    char code;
    Py_ssize_t size;
} Item;

typedef struct {
    Item items[MAX_ITEMS];
    int count;
    Py_ssize_t size; /* the whole struct: a shorter record is records.py's to reject */
} Layout;

static int layout_from(PyObject *seq, Py_ssize_t size, Layout *out, const char *codes)
{
    /* `codes`: the struct code this file expects at each index it reads ('?' for any). */
    PyObject *fast = PySequence_Fast(seq, "a layout is a sequence of (offset, code, size)");
    if (fast == NULL)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    if (n > MAX_ITEMS || n < (Py_ssize_t)strlen(codes)) {
        Py_DECREF(fast);
        PyErr_Format(PyExc_ValueError, "a layout of %zd values, expected %zu", n, strlen(codes));
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *code;
        Py_ssize_t offset, width;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, i), "nsn", &offset, &code, &width)) {
            Py_DECREF(fast);
            return -1;
        }
        if (i < (Py_ssize_t)strlen(codes) && codes[i] != '?' && codes[i] != code[0]) {
            Py_DECREF(fast);
            PyErr_Format(PyExc_ValueError, "value %zd is '%s', expected '%c'", i, code, codes[i]);
            return -1;
        }
        if (offset < 0 || width < 0 || offset + width > size) {
            Py_DECREF(fast);
            PyErr_Format(PyExc_ValueError, "value %zd lies outside the record", i);
            return -1;
        }
        out->items[i] = (Item){offset, code[0], width};
    }
    out->count = (int)n;
    out->size = size;
    Py_DECREF(fast);
    return 0;
}

static inline uint32_t u32_at(const char *rec, const Layout *l, int i)
{
    uint32_t v;
    memcpy(&v, rec + l->items[i].offset, sizeof v);
    return v;
}

static inline uint64_t u64_at(const char *rec, const Layout *l, int i)
{
    uint64_t v;
    memcpy(&v, rec + l->items[i].offset, sizeof v);
    return v;
}

/* A value as records.py's struct.unpack gives it ('I', 'i', 'Q', 'q'). */
static PyObject *int_at(const char *rec, const Layout *l, int i)
{
    switch (l->items[i].code) {
    case 'I':
        return PyLong_FromUnsignedLong(u32_at(rec, l, i));
    case 'i':
        return PyLong_FromLong((int32_t)u32_at(rec, l, i));
    case 'Q':
        return PyLong_FromUnsignedLongLong(u64_at(rec, l, i));
    case 'q':
        return PyLong_FromLongLong((int64_t)u64_at(rec, l, i));
    }
    PyErr_Format(PyExc_ValueError, "value %d is not an integer", i);
    return NULL;
}

/* ---- event classes: where each field's slot is, and its default ------------------------- */

enum { REQUIRED, DEFAULT, FACTORY };

typedef struct {
    PyTypeObject *type;
    int count;
    const char *names[MAX_FIELDS];
    Py_ssize_t offsets[MAX_FIELDS];
    PyObject *defaults[MAX_FIELDS];  /* the default value, or NULL */
    PyObject *factories[MAX_FIELDS]; /* the default factory, or NULL */
} Template;

static int template_from(PyObject *cls, PyObject *fields, Template *t)
{
    /* fields: (name, how, value) of each dataclass field, in order; `how` is DEFAULT (value
     * is the default), FACTORY (value makes it) or REQUIRED (the decoder must set it). */
    if (!PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "an event class is a type");
        return -1;
    }
    PyObject *fast = PySequence_Fast(fields, "fields are a sequence");
    if (fast == NULL)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    if (n > MAX_FIELDS) {
        Py_DECREF(fast);
        PyErr_SetString(PyExc_ValueError, "too many fields");
        return -1;
    }
    Py_INCREF(cls);
    t->type = (PyTypeObject *)cls;
    t->count = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name, *value;
        int how;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, i), "UiO", &name, &how, &value))
            goto fail;
        PyObject *descr = PyObject_GetAttr(cls, name);
        if (descr == NULL)
            goto fail;
        int ok = Py_IS_TYPE(descr, &PyMemberDescr_Type) &&
                 ((PyMemberDescrObject *)descr)->d_member->type == T_OBJECT_EX;
        Py_ssize_t offset = ok ? ((PyMemberDescrObject *)descr)->d_member->offset : 0;
        Py_DECREF(descr);
        if (!ok) {
            PyErr_Format(PyExc_TypeError, "%R is not a slot of %R", name, cls);
            goto fail;
        }
        t->names[i] = PyUnicode_AsUTF8(name); /* kept alive by the fields tuple we hold */
        t->offsets[i] = offset;
        t->defaults[i] = how == DEFAULT ? Py_NewRef(value) : NULL;
        t->factories[i] = how == FACTORY ? Py_NewRef(value) : NULL;
        t->count = (int)i + 1;
    }
    Py_DECREF(fast);
    return 0;
fail:
    Py_DECREF(fast);
    return -1;
}

static void template_clear(Template *t)
{
    for (int i = 0; i < t->count; i++) {
        Py_CLEAR(t->defaults[i]);
        Py_CLEAR(t->factories[i]);
    }
    t->count = 0;
    Py_CLEAR(t->type);
}

static int field_index(const Template *t, const char *name)
{
    for (int i = 0; i < t->count; i++)
        if (strcmp(t->names[i], name) == 0)
            return i;
    PyErr_Format(PyExc_TypeError, "%s has no field '%s'", t->type->tp_name, name);
    return -1;
}

/* The event with `values` (new references, stolen; NULL: the field's default) in its slots. */
static PyObject *build(const Template *t, PyObject **values)
{
    PyObject *obj = t->type->tp_alloc(t->type, 0);
    if (obj == NULL)
        goto fail;
    for (int i = 0; i < t->count; i++) {
        PyObject *v = values[i];
        values[i] = NULL;
        if (v == NULL) {
            if (t->defaults[i] != NULL)
                v = Py_NewRef(t->defaults[i]);
            else if (t->factories[i] == NULL)
                PyErr_Format(PyExc_TypeError, "%s.%s was not set", t->type->tp_name,
                             t->names[i]);
            else if (t->factories[i] == (PyObject *)&PyDict_Type)
                v = PyDict_New();
            else
                v = PyObject_CallNoArgs(t->factories[i]);
            if (v == NULL) {
                Py_DECREF(obj);
                obj = NULL;
                goto fail;
            }
        }
        *(PyObject **)((char *)obj + t->offsets[i]) = v;
    }
    return obj;
fail:
    for (int i = 0; i < t->count; i++)
        Py_CLEAR(values[i]);
    return NULL;
}

/* ---- the decoder ------------------------------------------------------------------------ */

/* Fields every syscall event gets from the record header, in records.py's unpack order:
 * ts, cgroup_id, kind, pid, tid, uid, gid, _pad, comm. */
enum { H_TS, H_CGROUP, H_KIND, H_PID, H_TID, H_UID, H_GID, H_PAD, H_COMM, H_END };
#define HEADER_CODES "QQIIIIII?"

/* open_record: header, nr, info, ret, dirfd, flags, mode, ino, dev, i_mode, raw_path, path */
enum { O_NR = H_END, O_INFO, O_RET, O_DIRFD, O_FLAGS, O_MODE, O_INO, O_DEV, O_IMODE, O_RAW,
       O_PATH };
#define OPEN_CODES HEADER_CODES "IIqqQQQII??"
/* fork_record: header, parent, child, flags, nr, _pad, exe_ino, exe_dev, exe_foreign */
enum { F_PARENT = H_END, F_CHILD, F_FLAGS, F_NR, F_PAD, F_INO, F_DEV, F_FOREIGN };
#define FORK_CODES HEADER_CODES "IIQIIQII"
/* exit_record: header, status */
enum { X_STATUS = H_END };
#define EXIT_CODES HEADER_CODES "i"

/* The fields this file sets, by template. */
enum { E_TYPE, E_TS, E_CGROUP, E_PID, E_TID, E_UID, E_GID, E_COMM, E_RET, E_COMMON };
static const char *const COMMON_FIELDS[] = {"type", "ts_ns", "cgroup_id", "pid", "tid",
                                            "uid", "gid", "comm", "ret"};
enum { FE_COMPAT = E_COMMON, FE_IO_URING, FE_PATH, FE_RAW_PATH, FE_DIRFD, FE_FLAGS, FE_MODE,
       FE_FILE_MODE, FE_INO, FE_DEV, FE_RESOLVED, FE_BASE, FE_END };
static const char *const FILE_FIELDS[] = {"compat", "io_uring", "path", "raw_path", "dirfd",
                                          "flags", "mode", "file_mode", "ino", "dev",
                                          "resolved", "base"};
enum { FK_CHILD_PID = E_COMMON, FK_CHILD_TID, FK_ARGS, FK_EXE_INO, FK_EXE_DEV, FK_FOREIGN,
       FK_END };
static const char *const FORK_FIELDS[] = {"child_pid", "child_tid", "args", "exe_ino",
                                          "exe_dev", "exe_foreign_mnt_ns"};
#define SET_MAX FE_END

typedef struct {
    PyObject_HEAD
    Layout open, fork, exit;
    Template file_t, fork_t, exit_t;
    int file_at[SET_MAX], fork_at[SET_MAX], exit_at[SET_MAX]; /* template index of each */
    Py_ssize_t kind_offset;
    uint32_t kind_open, kind_fork, kind_exit;
    uint32_t open_resolved, open_base, open_truncated, open_compat, open_io_uring;
    PyObject *names[MAX_NR];      /* syscall name by number (catalog.BY_NR) */
    uint32_t creat_nr;
    PyObject *creat_flags;
    PyObject *fork_names[MAX_NR]; /* a fork's event type by syscall number (else "clone") */
    PyObject *clone, *procexit;   /* type strings */
    PyObject *key_flags, *key_parent_tid;
    PyObject *fallback;           /* records.decode: every other record, and short ones */
    PyObject *text_decode;        /* text.decode(bytes, field): for bytes that are not UTF-8 */
    PyObject *record_field;       /* "record", the field text.decode counts them under */
    PyObject *keep;               /* what the templates' name pointers live in */
} Decoder;

static int indices(const Template *t, int *at, const char *const *names, int first, int end)
{
    for (int i = first; i < end; i++)
        if ((at[i] = field_index(t, names[i - first])) < 0)
            return -1;
    return 0;
}

static int common_indices(const Template *t, int *at)
{
    return indices(t, at, COMMON_FIELDS, 0, E_COMMON);
}

/* A NUL-terminated string of at most `size` bytes as records.cstr gives it. */
static PyObject *cstr(Decoder *self, const char *raw, Py_ssize_t size)
{
    const char *end = memchr(raw, 0, size);
    Py_ssize_t n = end == NULL ? size : end - raw;
    PyObject *s = PyUnicode_DecodeUTF8(raw, n, NULL);
    if (s != NULL || !PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
        return s;
    PyErr_Clear(); /* not UTF-8: text.decode escapes and counts it */
    PyObject *bytes = PyBytes_FromStringAndSize(raw, n);
    if (bytes == NULL)
        return NULL;
    s = PyObject_CallFunctionObjArgs(self->text_decode, bytes, self->record_field, NULL);
    Py_DECREF(bytes);
    return s;
}

static inline PyObject *str_item(Decoder *self, const char *rec, const Layout *l, int i)
{
    return cstr(self, rec + l->items[i].offset, l->items[i].size);
}

/* type, ts_ns, cgroup_id, pid, tid, uid, gid, comm of any syscall record; 0, or -1 on error */
static int header(Decoder *self, const char *rec, const Layout *l, const int *at,
                  PyObject *type, PyObject **v)
{
    v[at[E_TYPE]] = Py_NewRef(type);
    static const int from[] = {H_TS, H_CGROUP, H_PID, H_TID, H_UID, H_GID};
    static const int to[] = {E_TS, E_CGROUP, E_PID, E_TID, E_UID, E_GID};
    for (int i = 0; i < 6; i++)
        if ((v[at[to[i]]] = int_at(rec, l, from[i])) == NULL)
            return -1;
    return (v[at[E_COMM]] = str_item(self, rec, l, H_COMM)) == NULL ? -1 : 0;
}

static void drop(PyObject **v, int count)
{
    for (int i = 0; i < count; i++)
        Py_CLEAR(v[i]);
}

static PyObject *decode_open(Decoder *self, const char *rec)
{
    const Layout *l = &self->open;
    const int *at = self->file_at;
    uint32_t nr = u32_at(rec, l, O_NR), info = u32_at(rec, l, O_INFO);
    PyObject *name = nr < MAX_NR ? self->names[nr] : NULL;
    if (name == NULL)
        Py_RETURN_NONE; /* not a syscall of the catalog: records.py skips it too */
    PyObject *v[MAX_FIELDS] = {0};
    if (header(self, rec, l, at, name, v) < 0)
        goto fail;
    static const int from[] = {O_RET, O_DIRFD, O_MODE, O_IMODE, O_INO, O_DEV};
    static const int to[] = {E_RET, FE_DIRFD, FE_MODE, FE_FILE_MODE, FE_INO, FE_DEV};
    for (int i = 0; i < 6; i++)
        if ((v[at[to[i]]] = int_at(rec, l, from[i])) == NULL)
            goto fail;
    v[at[FE_FLAGS]] = nr == self->creat_nr ? Py_NewRef(self->creat_flags)
                                           : int_at(rec, l, O_FLAGS);
    if (v[at[FE_FLAGS]] == NULL)
        goto fail;
    v[at[FE_COMPAT]] = PyBool_FromLong(info & self->open_compat);
    v[at[FE_IO_URING]] = PyBool_FromLong(info & self->open_io_uring);
    PyObject *written = str_item(self, rec, l, O_RAW);
    if (written == NULL)
        goto fail;
    v[at[FE_RAW_PATH]] = written;
    const Item *raw = &l->items[O_RAW], *path = &l->items[O_PATH];
    int whole = !(info & self->open_truncated);
    if (info & self->open_resolved && whole) {
        /* Most opens name the file they open: the same bytes need not be decoded twice. */
        const char *end = memchr(rec + raw->offset, 0, raw->size);
        Py_ssize_t n = end == NULL ? -1 : end - (rec + raw->offset) + 1;
        int same = n > 0 && n <= path->size &&
                   memcmp(rec + path->offset, rec + raw->offset, n) == 0;
        v[at[FE_PATH]] = same ? Py_NewRef(written) : str_item(self, rec, l, O_PATH);
        v[at[FE_RESOLVED]] = Py_NewRef(Py_True);
    } else {
        v[at[FE_PATH]] = Py_NewRef(written);
        /* a relative path that opened nothing: the directory it was relative to */
        if (info & self->open_base && whole &&
            (v[at[FE_BASE]] = str_item(self, rec, l, O_PATH)) == NULL)
            goto fail;
    }
    if (v[at[FE_PATH]] == NULL)
        goto fail;
    return build(&self->file_t, v);
fail:
    drop(v, self->file_t.count);
    return NULL;
}

static PyObject *decode_fork(Decoder *self, const char *rec)
{
    const Layout *l = &self->fork;
    const int *at = self->fork_at;
    PyObject *v[MAX_FIELDS] = {0};
    uint32_t nr = u32_at(rec, l, F_NR);
    PyObject *type = nr < MAX_NR ? self->fork_names[nr] : NULL;
    if (header(self, rec, l, at, type == NULL ? self->clone : type, v) < 0)
        goto fail;
    PyObject *child = int_at(rec, l, F_CHILD);
    if (child == NULL)
        goto fail;
    v[at[E_RET]] = child;
    v[at[FK_CHILD_PID]] = Py_NewRef(child);
    v[at[FK_CHILD_TID]] = Py_NewRef(child);
    PyObject *flags = int_at(rec, l, F_FLAGS), *parent = int_at(rec, l, F_PARENT);
    PyObject *args = flags && parent ? PyDict_New() : NULL;
    if (args != NULL && (PyDict_SetItem(args, self->key_flags, flags) < 0 ||
                         PyDict_SetItem(args, self->key_parent_tid, parent) < 0))
        Py_CLEAR(args);
    Py_XDECREF(flags);
    Py_XDECREF(parent);
    if ((v[at[FK_ARGS]] = args) == NULL)
        goto fail;
    if ((v[at[FK_EXE_INO]] = int_at(rec, l, F_INO)) == NULL ||
        (v[at[FK_EXE_DEV]] = int_at(rec, l, F_DEV)) == NULL)
        goto fail;
    v[at[FK_FOREIGN]] = PyBool_FromLong(u32_at(rec, l, F_FOREIGN) != 0);
    return build(&self->fork_t, v);
fail:
    drop(v, self->fork_t.count);
    return NULL;
}

static PyObject *decode_exit(Decoder *self, const char *rec)
{
    const Layout *l = &self->exit;
    const int *at = self->exit_at;
    PyObject *v[MAX_FIELDS] = {0};
    if (header(self, rec, l, at, self->procexit, v) < 0 ||
        (v[at[E_RET]] = int_at(rec, l, X_STATUS)) == NULL) {
        drop(v, self->exit_t.count);
        return NULL;
    }
    return build(&self->exit_t, v);
}

/* One record: `view` is what the fallback gets (made only when it is needed). */
static PyObject *decode_one(Decoder *self, const char *rec, Py_ssize_t size,
                            PyObject *(*view)(void *), void *arg)
{
    if (size >= self->kind_offset + 4) {
        uint32_t kind;
        memcpy(&kind, rec + self->kind_offset, sizeof kind);
        if (kind == self->kind_open && size >= self->open.size)
            return decode_open(self, rec);
        if (kind == self->kind_fork && size >= self->fork.size)
            return decode_fork(self, rec);
        if (kind == self->kind_exit && size >= self->exit.size)
            return decode_exit(self, rec);
    }
    PyObject *raw = view(arg);
    if (raw == NULL)
        return NULL;
    PyObject *event = PyObject_CallOneArg(self->fallback, raw);
    Py_DECREF(raw);
    return event;
}

static PyObject *same_object(void *arg)
{
    return Py_NewRef((PyObject *)arg);
}

static PyObject *Decoder_call(Decoder *self, PyObject *args, PyObject *kwds)
{
    PyObject *raw;
    if (kwds != NULL && PyDict_GET_SIZE(kwds) != 0) {
        PyErr_SetString(PyExc_TypeError, "a Decoder is called with one record, no keywords");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "O", &raw))
        return NULL;
    Py_buffer buf;
    if (PyObject_GetBuffer(raw, &buf, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *event = decode_one(self, buf.buf, buf.len, same_object, raw);
    PyBuffer_Release(&buf);
    return event;
}

/* The exception being raised, taken (normalised, with its traceback); NULL if none. */
static PyObject *raised(void)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (type == NULL)
        return NULL;
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
}

typedef struct {
    PyObject *whole; /* a memoryview of the batch */
    Py_ssize_t start, stop;
} Span;

static PyObject *span_view(void *arg)
{
    Span *span = arg;
    PyObject *slice, *item;
    PyObject *start = PyLong_FromSsize_t(span->start), *stop = PyLong_FromSsize_t(span->stop);
    slice = start && stop ? PySlice_New(start, stop, NULL) : NULL;
    Py_XDECREF(start);
    Py_XDECREF(stop);
    if (slice == NULL)
        return NULL;
    item = PyObject_GetItem(span->whole, slice);
    Py_DECREF(slice);
    return item;
}

PyDoc_STRVAR(decode_batch_doc,
"decode_batch(chunk, spans, failed) -> list of events\n\n"
"The events of the records at `spans` ((offset, size) pairs) of `chunk` (bytes), in order;\n"
"records that decode to None are left out. A record whose decoding raises is left out too,\n"
"after `failed(size, exception)` is called (what it raises propagates).");

static PyObject *Decoder_decode_batch(Decoder *self, PyObject *args)
{
    PyObject *chunk, *spans, *failed;
    if (!PyArg_ParseTuple(args, "SOO", &chunk, &spans, &failed))
        return NULL;
    PyObject *fast = PySequence_Fast(spans, "spans are a sequence");
    if (fast == NULL)
        return NULL;
    const char *data = PyBytes_AS_STRING(chunk);
    Py_ssize_t length = PyBytes_GET_SIZE(chunk), n = PySequence_Fast_GET_SIZE(fast);
    PyObject *events = PyList_New(0), *whole = PyMemoryView_FromObject(chunk);
    if (events == NULL || whole == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t offset, size;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, i), "nn", &offset, &size))
            goto fail;
        if (offset < 0 || size < 0 || offset > length || size > length - offset) {
            PyErr_SetString(PyExc_ValueError, "a span outside the batch");
            goto fail;
        }
        Span span = {whole, offset, offset + size};
        PyObject *event = decode_one(self, data + offset, size, span_view, &span);
        if (event == NULL) {
            PyObject *exc = raised();
            if (exc == NULL)
                goto fail;
            PyObject *r = PyObject_CallFunction(failed, "nO", size, exc);
            Py_DECREF(exc);
            if (r == NULL)
                goto fail;
            Py_DECREF(r);
            continue;
        }
        int err = event == Py_None ? 0 : PyList_Append(events, event);
        Py_DECREF(event);
        if (err < 0)
            goto fail;
    }
    Py_DECREF(whole);
    Py_DECREF(fast);
    return events;
fail:
    Py_XDECREF(whole);
    Py_XDECREF(events);
    Py_DECREF(fast);
    return NULL;
}

/* ---- construction ----------------------------------------------------------------------- */

static int layout_arg(PyObject *arg, Layout *out, const char *codes)
{
    PyObject *items;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(arg, "On", &items, &size))
        return -1;
    return layout_from(items, size, out, codes);
}

static int template_arg(PyObject *arg, Template *t)
{
    PyObject *cls, *fields;
    if (!PyArg_ParseTuple(arg, "OO", &cls, &fields))
        return -1;
    return template_from(cls, fields, t);
}

/* A dict of syscall number -> str as a table indexed by number. */
static int table_from(PyObject *dict, PyObject **table)
{
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(dict, &pos, &key, &value)) {
        long nr = PyLong_AsLong(key);
        if (nr == -1 && PyErr_Occurred())
            return -1;
        if (nr < 0 || nr >= MAX_NR || !PyUnicode_Check(value)) {
            PyErr_Format(PyExc_ValueError, "syscall %R: %R", key, value);
            return -1;
        }
        Py_XSETREF(table[nr], Py_NewRef(value));
    }
    return 0;
}

static int Decoder_init(Decoder *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"layouts", "kinds", "kind_offset", "open_bits", "names",
                             "creat_flags", "fork_types", "events", "fallback", "text_decode",
                             NULL};
    PyObject *layouts, *names, *creat_flags, *fork_types, *events, *fallback, *text_decode;
    unsigned int kinds[3], bits[5];
    Py_ssize_t kind_offset;
    if (self->fallback != NULL) {
        PyErr_SetString(PyExc_TypeError, "a Decoder is made once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(
            args, kwds, "$O(III)n(IIIII)O!OO!OOO", kwlist, &layouts, &kinds[0], &kinds[1],
            &kinds[2], &kind_offset, &bits[0], &bits[1], &bits[2], &bits[3], &bits[4],
            &PyDict_Type, &names, &creat_flags, &PyDict_Type, &fork_types, &events, &fallback,
            &text_decode))
        return -1;
    PyObject *lo, *lf, *lx, *ef, *ek, *ex;
    if (!PyArg_ParseTuple(layouts, "OOO", &lo, &lf, &lx) ||
        !PyArg_ParseTuple(events, "OOO", &ef, &ek, &ex))
        return -1;
    if (layout_arg(lo, &self->open, OPEN_CODES) < 0 || layout_arg(lf, &self->fork, FORK_CODES) < 0 ||
        layout_arg(lx, &self->exit, EXIT_CODES) < 0)
        return -1;
    if (template_arg(ef, &self->file_t) < 0 || template_arg(ek, &self->fork_t) < 0 ||
        template_arg(ex, &self->exit_t) < 0)
        return -1;
    self->keep = Py_NewRef(events);
    if (common_indices(&self->file_t, self->file_at) < 0 ||
        indices(&self->file_t, self->file_at, FILE_FIELDS, E_COMMON, FE_END) < 0 ||
        common_indices(&self->fork_t, self->fork_at) < 0 ||
        indices(&self->fork_t, self->fork_at, FORK_FIELDS, E_COMMON, FK_END) < 0 ||
        common_indices(&self->exit_t, self->exit_at) < 0)
        return -1;
    self->kind_offset = kind_offset;
    self->kind_open = kinds[0];
    self->kind_fork = kinds[1];
    self->kind_exit = kinds[2];
    self->open_resolved = bits[0];
    self->open_base = bits[1];
    self->open_truncated = bits[2];
    self->open_compat = bits[3];
    self->open_io_uring = bits[4];
    self->creat_nr = UINT32_MAX;
    if (table_from(names, self->names) < 0 || table_from(fork_types, self->fork_names) < 0)
        return -1;
    for (uint32_t nr = 0; nr < MAX_NR; nr++)
        if (self->names[nr] && PyUnicode_CompareWithASCIIString(self->names[nr], "creat") == 0)
            self->creat_nr = nr;
    self->creat_flags = Py_NewRef(creat_flags);
    self->fallback = Py_NewRef(fallback);
    self->text_decode = Py_NewRef(text_decode);
    self->clone = PyUnicode_InternFromString("clone");
    self->procexit = PyUnicode_InternFromString("procexit");
    self->key_flags = PyUnicode_InternFromString("flags");
    self->key_parent_tid = PyUnicode_InternFromString("parent_tid");
    self->record_field = PyUnicode_InternFromString("record");
    if (!self->clone || !self->procexit || !self->key_flags || !self->key_parent_tid ||
        !self->record_field)
        return -1;
    return 0;
}

static int Decoder_traverse(Decoder *self, visitproc visit, void *arg)
{
    Py_VISIT(self->fallback);
    Py_VISIT(self->text_decode);
    Py_VISIT(self->keep);
    return 0;
}

static int Decoder_clear(Decoder *self)
{
    template_clear(&self->file_t);
    template_clear(&self->fork_t);
    template_clear(&self->exit_t);
    for (int i = 0; i < MAX_NR; i++) {
        Py_CLEAR(self->names[i]);
        Py_CLEAR(self->fork_names[i]);
    }
    Py_CLEAR(self->creat_flags);
    Py_CLEAR(self->clone);
    Py_CLEAR(self->procexit);
    Py_CLEAR(self->key_flags);
    Py_CLEAR(self->key_parent_tid);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->text_decode);
    Py_CLEAR(self->record_field);
    Py_CLEAR(self->keep);
    return 0;
}

static void Decoder_dealloc(Decoder *self)
{
    PyObject_GC_UnTrack(self);
    Decoder_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Decoder_methods[] = {
    {"decode_batch", (PyCFunction)Decoder_decode_batch, METH_VARARGS, decode_batch_doc},
    {NULL},
};

PyDoc_STRVAR(Decoder_doc,
"Decoder(*, layouts, kinds, kind_offset, open_bits, names, creat_flags, fork_types, events,\n"
"        fallback, text_decode)\n\n"
"Called with one record (bytes-like), returns its event as records.decode would; see\n"
"records.compiled_decoder for the arguments.");

static PyTypeObject DecoderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cauditd.probes._fastrecords.Decoder",
    .tp_basicsize = sizeof(Decoder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = Decoder_doc,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Decoder_init,
    .tp_dealloc = (destructor)Decoder_dealloc,
    .tp_traverse = (traverseproc)Decoder_traverse,
    .tp_clear = (inquiry)Decoder_clear,
    .tp_call = (ternaryfunc)Decoder_call,
    .tp_methods = Decoder_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "cauditd.probes._fastrecords",
    .m_doc = "The syscall ring's open, fork and exit records decoded in C (records.py is the "
             "reference).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__fastrecords(void)
{
    if (PyType_Ready(&DecoderType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Decoder", (PyObject *)&DecoderType) < 0 ||
        PyModule_AddIntConstant(m, "REQUIRED", REQUIRED) < 0 ||
        PyModule_AddIntConstant(m, "DEFAULT", DEFAULT) < 0 ||
        PyModule_AddIntConstant(m, "FACTORY", FACTORY) < 0 ||
        PyModule_AddStringConstant(m, "SOURCE_SHA", CAUDITD_SOURCE_SHA) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
