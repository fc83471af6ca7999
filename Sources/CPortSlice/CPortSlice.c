// Header-only shim; this file exists because SwiftPM needs a source file for a C target.
#include "CPortSlice.h"
