-- Pandoc filter for the offline preview: Workbench divs become styled boxes,
-- solutions, hints and spoilers become collapsible, and links between the
-- lesson's Markdown files become links between the built pages.

local repository = ""
local collapsible = { solution = "Show the solution", hint = "Show a hint", spoiler = "Show details" }

function Div(el)
  local kind = el.classes[1]
  local label = collapsible[kind]
  if label == nil then
    return nil
  end
  local summary = label
  if #el.content > 0 and el.content[1].t == "Header" then
    summary = pandoc.utils.stringify(el.content[1])
    table.remove(el.content, 1)
  end
  local open = pandoc.RawBlock("html", '<details class="' .. kind .. '"><summary>' .. summary .. "</summary>")
  local close = pandoc.RawBlock("html", "</details>")
  return { open, pandoc.Div(el.content, el.attr), close }
end

local function rewrite(target)
  if target:match("^%a[%w+.-]*:") or target:match("^#") then
    return target
  end
  local path, anchor = target:match("^([^#]*)(#?.*)$")
  -- notebooks and data files are not part of the site: link to them in the repository
  local outside = path:match("^%.%./(notebooks/.*)$") or path:match("^%.%./(data/.*)$")
  if outside then
    return repository .. "/blob/main/" .. outside .. anchor
  end
  local page = path:match("^%.%./%a+/([^/]+)%.md$") or path:match("^%a+/([^/]+)%.md$")
    or path:match("^([^/]+)%.md$")
  if page then
    return page .. ".html" .. anchor
  end
  return target
end

function Link(el)
  el.target = rewrite(el.target)
  return el
end

function Image(el)
  el.src = rewrite(el.src)
  return el
end

return {
  { Meta = function(meta) repository = pandoc.utils.stringify(meta.repository or "") end },
  { Div = Div, Link = Link, Image = Image },
}
