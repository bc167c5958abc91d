// Must not compile: a part (here tests/) including another part's private
// header. tests/CMakeLists.txt builds it and expects the compiler to say the
// header is not there: the boundary is the build's, not a convention.
#include "models/internal/graph.h"

int main() { return 0; }
