local nodes = {}
for i = 1, 3 do
  nodes[#nodes + 1] = { id = i, peer = ("127.0.0.1:%d"):format(7000 + i),
                        http = "127.0.0.1:" .. tostring(8000 + i) }
end
return { cluster = string.rep("c", 3), nodes = nodes, storage = "d/%d" }
