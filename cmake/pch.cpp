// Owns the precompiled header that every library reuses; see cmake/QatPch.cmake.
