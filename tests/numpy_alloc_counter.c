/* A numpy data-memory handler that counts the array buffers numpy allocates while counting is
 * on (numpy's documented PyDataMem_SetHandler API); built and used by
 * tests/test_callback_allocations.py. */
#define PY_SSIZE_T_CLEAN
#define NPY_NO_DEPRECATED_API NPY_1_22_API_VERSION
#include <Python.h>
#include <numpy/arrayobject.h>
#include <stdlib.h>

static long count = 0;
static int counting = 0;

static void *count_malloc(void *ctx, size_t size) { count += counting; return malloc(size ? size : 1); }
static void *count_calloc(void *ctx, size_t n, size_t size) { count += counting; return calloc(n ? n : 1, size ? size : 1); }
static void *count_realloc(void *ctx, void *p, size_t size) { count += counting; return realloc(p, size ? size : 1); }
static void count_free(void *ctx, void *p, size_t size) { free(p); }

static PyDataMem_Handler handler = {
    "counting_allocator", 1, {NULL, count_malloc, count_calloc, count_realloc, count_free}};

static PyObject *install(PyObject *self, PyObject *args) {
    PyObject *capsule = PyCapsule_New(&handler, "mem_handler", NULL);
    if (capsule == NULL) return NULL;
    PyObject *old = PyDataMem_SetHandler(capsule);
    Py_DECREF(capsule);
    return old;
}
static PyObject *start(PyObject *self, PyObject *args) { count = 0; counting = 1; Py_RETURN_NONE; }
static PyObject *stop(PyObject *self, PyObject *args) { counting = 0; return PyLong_FromLong(count); }

static PyMethodDef methods[] = {
    {"install", install, METH_NOARGS, "Use the counting handler in this context."},
    {"start", start, METH_NOARGS, "Reset the count and start counting."},
    {"stop", stop, METH_NOARGS, "Stop counting; the number of buffers allocated."},
    {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "numpy_alloc_counter", NULL, -1, methods};

PyMODINIT_FUNC PyInit_numpy_alloc_counter(void) {
    import_array();
    return PyModule_Create(&module);
}
