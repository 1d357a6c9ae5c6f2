# gitrev.cmake -- write the git revision the binary reports (--version) into
# a header, at every build, touching it only when it changed.
#
#   cmake -DSRC=source-dir -DOUT=gitrev.h [-DREV=given] -P gitrev.cmake
#
# REV, when given, wins (the Docker build has no .git); else the short
# hash of HEAD, "-dirty" when the tree has uncommitted changes; else
# "unknown" (not a git checkout, or no git).
if(NOT REV)
  execute_process(
    COMMAND git describe --always --dirty --abbrev=12 --match=-no-tags-
    WORKING_DIRECTORY "${SRC}" OUTPUT_VARIABLE REV RESULT_VARIABLE rc
    OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(rc)
    set(REV "")
  endif()
endif()
if(NOT REV)
  set(REV unknown)
endif()
set(text "#define RAFTING_GIT_REV \"${REV}\"\n")
set(old "")
if(EXISTS "${OUT}")
  file(READ "${OUT}" old)
endif()
if(NOT old STREQUAL text)
  file(WRITE "${OUT}" "${text}")
endif()
