--[[
sim_helper.lua -- shared by the simulator specs in spec/core/.
]]
local M = {}

-- the first node of s that is none of the given ids
function M.other_than(s, ...)
  local skip = {}
  for _, id in ipairs({ ... }) do skip[id] = true end
  for _, id in ipairs(s.ids) do if not skip[id] then return id end end
end

-- every node has applied everything in leader l's log
function M.caught_up(s, l)
  local last = s:state(l).last_index
  for _, id in ipairs(s.ids) do
    local st = s:state(id)
    if not st or st.applied < last then return false end
  end
  return true
end

return M
