// The Python module object for fastgen._C. It exposes nothing itself: importing the shared
// library runs the TORCH_LIBRARY registrations in the other files, which is all Python needs.
#include <Python.h>

extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", "fastgen compiled ops", -1, nullptr};
  return PyModule_Create(&module);
}
