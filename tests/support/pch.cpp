// Owns the precompiled header (catch_torch.h) that every test target reuses; see
// tests/CMakeLists.txt.
