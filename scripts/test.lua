-- scripts/test.lua -- run every test layer and print one summary line.
--
-- Called by `./dev test` after the plain build.  Layers: C unit tests
-- (ctest), busted specs (core, storage, http, cluster), then the same C
-- tests and the core and cluster specs again on an ASan+UBSan build.
-- Options: --quick (skip the sanitizer build), --only=PATTERN (spec dirs).
-- Exits non-zero if anything failed.

local quick, only = false, nil
for _, a in ipairs(arg) do
  if a == "--quick" then quick = true
  elseif a:match("^%-%-only=") then only = a:match("^%-%-only=(.*)")
  else io.stderr:write("test: unknown option " .. a .. "\n"); os.exit(2) end
end

local passed, failed, failures = 0, 0, {}
-- every process the harness starts is recorded here (see docs/harness.md)
local pidfile = os.tmpname()

local function sh(cmd)
  io.stdout:write("\n$ " .. cmd .. "\n"); io.stdout:flush()
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = {}
  for line in p:lines() do
    out[#out + 1] = line
    io.stdout:write(line, "\n"); io.stdout:flush()
  end
  local ok, _, code = p:close()
  return ok, code, out
end

local function record(name, ok)
  if ok then passed = passed + 1
  else failed = failed + 1; failures[#failures + 1] = name end
end

local function ctest(dir)
  local _, _, out = sh("cd " .. dir .. " && ctest --output-on-failure")
  local seen = false
  for _, l in ipairs(out) do
    local name, res = l:match("Test%s+#%d+: (%S+) %.+%s*(%*?%*?%*?%w+)")
    if name then seen = true; record(dir .. ": " .. name, res == "Passed") end
  end
  if not seen then record(dir .. ": ctest ran", false) end
end

local function busted(dir, build, env)
  local cmd = string.format(
    "RAFTING_PIDFILE=" .. pidfile .. " %s busted --lpath='./lua/?.lua;./lua/?/init.lua' --cpath='./%s/lua/?.so'" ..
    " -o TAP %s", env or "", build, dir)
  local ok, _, out = sh(cmd)
  local n, bad = 0, 0
  for _, l in ipairs(out) do
    local res, name = l:match("^(n?o?t? ?ok) %d+ %- (.*)")
    if res then
      n = n + 1
      if res ~= "ok" then bad = bad + 1 end
      record(dir .. ": " .. name, res == "ok")
    end
  end
  -- a crash or an error outside any test shows only in the exit status
  if n == 0 or (not ok and bad == 0) then
    record(dir .. ": busted run completed", false)
  end
end

local function has_specs(dir)
  local p = io.popen("ls " .. dir .. "/*_spec.lua 2>/dev/null")
  local s = p:read("a"); p:close()
  return s ~= ""
end

local function want(dir) return not only or dir:find(only, 1, true) end

local suites = { "spec/core", "spec/sm", "spec/storage", "spec/http",
                 "spec/cluster" }

ctest("build")
for _, d in ipairs(suites) do
  if want(d) and has_specs(d) then
    busted(d, "build", "RAFTING_BIN=./build/rafting")
  end
end

if not quick then
  local ok = sh("cmake -S . -B build-asan -DRAFTING_SANITIZE=ON " ..
                "-DCMAKE_BUILD_TYPE=Debug >/dev/null && " ..
                "cmake --build build-asan -j$(nproc) > build-asan/build.log 2>&1" ..
                " || (cat build-asan/build.log; false)")
  record("asan build", ok)
  if ok then
    ctest("build-asan")
    local pre = io.popen("gcc -print-file-name=libasan.so"):read("l")
    local env = "LD_PRELOAD=" .. pre ..
      " ASAN_OPTIONS=detect_leaks=0:abort_on_error=1" ..
      " UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1" ..
      " RAFTING_BIN=./build-asan/rafting" ..
      -- the plain build ran the full 300 seeds; under ASan a sample will do
      " RAFTING_SEEDS=60"
    for _, d in ipairs({ "spec/core", "spec/sm", "spec/storage", "spec/http",
                         "spec/cluster" }) do
      if want(d) and has_specs(d) then busted(d, "build-asan", env) end
    end
  end
end

-- no node process may outlive the specs
record("no process started by the specs is alive",
       os.execute("lua5.4 spec/support/no_leftovers.lua " .. pidfile) == true)
os.remove(pidfile)
local p = io.popen("pgrep -af 'build(-asan)?/rafting --config' || true")
local left = p:read("a"); p:close()
record("no rafting process left behind", left == "")
if left ~= "" then
  print("left behind:\n" .. left)
  os.execute("pkill -9 -f 'build(-asan)?/rafting --config'")
end

if #failures > 0 then
  print("\nfailed:")
  for _, f in ipairs(failures) do print("  " .. f) end
end
print(string.format("\n%d passed, %d failed", passed, failed))
os.exit(failed == 0 and 0 or 1)
