#pragma once
// Stand-in for the file a CUDA build of libtorch generates (empty there too for our purposes).
