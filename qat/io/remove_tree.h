// Recursive delete with POSIX calls. Never use std::filesystem::remove_all in code that links
// libtorch: the pip wheel's libtorch.so exports its own copy of std::filesystem's remove_all (and
// a few other functions), the dynamic linker binds our calls to it, and it crashes (a call
// through a null pointer) as soon as it meets a directory.
#pragma once

#include <string>

namespace qat::io {

// Removes `path` and everything under it (symlinks are removed, not followed). A missing path
// is fine; failure to remove something throws std::runtime_error naming it.
void remove_tree(const std::string& path);

}  // namespace qat::io
