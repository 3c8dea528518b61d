-- wrk script for bench/ingest.sh: POST /webhooks/{source} with a native body naming two media
-- IDs that are new on every request (thread number + counter), bearer auth.
--   wrk -s bench/ingest.lua URL   with   TOKEN, SOURCE and RUN (an ID prefix) in the environment.

local token = os.getenv("TOKEN") or "bench-secret"
local source = os.getenv("SOURCE") or "cms"
local run = os.getenv("RUN") or "r"

local threads = {}
local counter = 1

function setup(thread)
   thread:set("tid", #threads + 1)
   table.insert(threads, thread)
end

function init(args)
   wrk.method = "POST"
   wrk.path = "/webhooks/" .. source
   wrk.headers["Authorization"] = "Bearer " .. token
   wrk.headers["Content-Type"] = "application/json"
end

function request()
   counter = counter + 1
   local id = run .. "-" .. tid .. "-" .. counter
   local body = '{"media_ids": ["' .. id .. 'a", "' .. id .. 'b"], "task": "Refresh"}'
   return wrk.format(nil, nil, nil, body)
end
