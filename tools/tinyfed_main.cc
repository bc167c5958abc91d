// The `tinyfed` command: thin subcommands over the libraries.
#include "tools/commands.h"

int main(int argc, char** argv) { return tinyfed::tools::RunTinyfed(argc, argv, /*testing=*/nullptr); }
