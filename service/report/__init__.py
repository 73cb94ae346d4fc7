"""`vigil report`: the summary as one self-contained HTML page with inline SVG charts."""
