# npm_ci.cmake — install the browser tests' npm packages into DIR.
# cmake -DNPM=<npm> -DSRC=<tests/e2e> -DDIR=<build dir> -P npm_ci.cmake
# Runs `npm ci` only when DIR lacks node_modules or its package-lock.json
# differs from SRC's, so repeated test runs need no network.
foreach(f package.json package-lock.json)
  if(NOT EXISTS ${SRC}/${f})
    message(FATAL_ERROR "e2e: ${SRC}/${f} is missing")
  endif()
endforeach()
set(stamp ${DIR}/node_modules/.kvchat-npm-ci)
if(EXISTS ${stamp} AND EXISTS ${DIR}/package-lock.json)
  file(SHA256 ${SRC}/package-lock.json want)
  file(SHA256 ${DIR}/package-lock.json have)
  if(want STREQUAL have)
    message(STATUS "e2e: npm packages are up to date in ${DIR}")
    return()
  endif()
endif()
file(MAKE_DIRECTORY ${DIR})
file(COPY ${SRC}/package.json ${SRC}/package-lock.json DESTINATION ${DIR})
execute_process(COMMAND ${NPM} ci --no-audit --no-fund --loglevel=error
  WORKING_DIRECTORY ${DIR} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "e2e: npm ci failed in ${DIR} (is the npm registry reachable?)")
endif()
file(TOUCH ${stamp})
message(STATUS "e2e: installed the npm packages into ${DIR}")
