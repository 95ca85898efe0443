#pragma once
// The one place the tests meet Catch2, so they build against Catch2 2 (Debian 12: one header,
// catch2/catch.hpp) and Catch2 3 (Debian 13: a compiled library, catch2/catch_all.hpp).
// test/CMakeLists.txt defines PROM_CATCH2_MAJOR from the Catch2 it found. The two differences the
// tests meet:
// - Catch2 3 has no global Approx, only Catch::Approx;
// - Catch2 3's Catch::Matchers::Contains is the range matcher ("a range holds this element"); the
//   string matcher our tests mean by Contains(text) is called ContainsSubstring there. The overloads
//   below give Contains(text) its Catch2 2 meaning: for a string argument a non-template overload
//   beats Catch2's Contains(T&&) template, so which one runs does not depend on the argument's type.
// test/unit/main.cpp defines main() itself (CATCH_CONFIG_RUNNER: Catch2 2 then compiles its runner
// into that file; Catch2 3 keeps it in libCatch2, and we link Catch2::Catch2, not Catch2WithMain).

#ifndef PROM_CATCH2_MAJOR
#error "PROM_CATCH2_MAJOR is not defined: test/CMakeLists.txt sets it from the Catch2 it found"
#endif

#if PROM_CATCH2_MAJOR >= 3

#include <catch2/catch_all.hpp>

#include <string>

using Catch::Approx;

namespace Catch::Matchers {
inline StringContainsMatcher Contains(const std::string& text) { return ContainsSubstring(text); }
inline StringContainsMatcher Contains(std::string& text) { return ContainsSubstring(text); }
inline StringContainsMatcher Contains(std::string&& text) { return ContainsSubstring(text); }
inline StringContainsMatcher Contains(const char* text) { return ContainsSubstring(text); }
}  // namespace Catch::Matchers

#else

#include <catch2/catch.hpp>

#endif
