-- Argo CD health check for multitask.ai/MultiTaskModel.
-- Installed through argocd-cm (argocd-cm.yaml here); tested with lua5.1 by
-- tests/chart/test_health_lua.py. Argo CD runs it with `obj`, the live object, and reads the
-- returned {status, message}. Lua 5.1 only: Argo CD's interpreter is gopher-lua.
local hs = {}
local status = obj.status

if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator"
  return hs
end

-- A spec edit the operator has not acted on yet: whatever the phase says describes the old spec.
local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local progressing = {
  Pending = true, Preparing = true, TrainingStage1 = true, TrainingStage2 = true,
  Evaluating = true, Exporting = true, Deploying = true,
}
local phase = status.phase

if phase == "Ready" then
  hs.status = "Healthy"
  hs.message = status.message or "Ready"
elseif phase == "Failed" then
  hs.status = "Degraded"
  hs.message = status.message or "Failed"
elseif progressing[phase] then
  hs.status = "Progressing"
  hs.message = phase
  local progress = status.progress
  if progress ~= nil and progress.percent ~= nil then
    hs.message = hs.message .. string.format(" %.0f%%", progress.percent)
  end
  if status.message ~= nil and status.message ~= "" then
    hs.message = hs.message .. ": " .. status.message
  end
else
  -- A phase from a newer operator than this check knows about.
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase)
end
return hs
