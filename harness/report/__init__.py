"""Reports: scenario results (table, JSON) and strategy comparisons (table, Markdown, JSON, HTML)."""
