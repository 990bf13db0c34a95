"""Finding the diff in a mail's text, the files it touches, and a pull request's URL."""

from __future__ import annotations

import pytest

from patchbot.mail.diff import FileChange, files_touched, find_pull_url, split_text

PATCH_MAIL = """\
rpc: return an error for unknown types

The RPC answered 200 with an empty result.

Signed-off-by: Jane Doe <jane@example.org>
---
 web/html/rpc.php | 2 +-
 1 file changed, 1 insertion(+), 1 deletion(-)

diff --git a/web/html/rpc.php b/web/html/rpc.php
index 1111111..2222222 100644
--- a/web/html/rpc.php
+++ b/web/html/rpc.php
@@ -1,3 +1,3 @@
 <?php
-$type = $_GET['type'];
+$type = $_GET['type'] ?? 'error';
 echo json_encode([]);
-- 
2.39.5
"""

DIFF = """\
diff --git a/web/html/rpc.php b/web/html/rpc.php
index 1111111..2222222 100644
--- a/web/html/rpc.php
+++ b/web/html/rpc.php
@@ -1,3 +1,3 @@
 <?php
-$type = $_GET['type'];
+$type = $_GET['type'] ?? 'error';
 echo json_encode([]);
"""


def test_a_diff_followed_by_a_signature():
    split = split_text(PATCH_MAIL)
    assert split.diff == DIFF
    assert split.message == (
        "rpc: return an error for unknown types\n\nThe RPC answered 200 with an empty result.\n\n"
        "Signed-off-by: Jane Doe <jane@example.org>"
    )
    assert split.prose == (
        "rpc: return an error for unknown types\n\nThe RPC answered 200 with an empty result.\n\n"
        "Signed-off-by: Jane Doe <jane@example.org>\n---\n web/html/rpc.php | 2 +-\n"
        " 1 file changed, 1 insertion(+), 1 deletion(-)\n\n-- \n2.39.5\n"
    )
    assert split.diffstat is True
    assert files_touched(split) == (
        FileChange(path="web/html/rpc.php", old_mode="100644", new_mode="100644", lines_added=1, lines_removed=1),
    )


def test_a_diff_quoted_in_prose_is_not_a_diff():
    text = (
        "On Monday Jane wrote:\n> diff --git a/web/a.php b/web/a.php\n> index 1111111..2222222 100644\n"
        "> --- a/web/a.php\n> +++ b/web/a.php\n> @@ -1,3 +1,3 @@\n>  <?php\n> -echo 1;\n> +echo 2;\n\n"
        "Looks good to me.\nReviewed-by: Bob <bob@example.org>\n"
    )
    split = split_text(text)
    assert split.diff == ""
    assert split.prose == text
    assert files_touched(split) == ()


def test_prose_mentioning_diff_inline_is_not_a_diff():
    text = "Run diff --git a/x b/x to see it.\nOr use `diff --git` yourself.\nThe --- and +++ lines follow.\n"
    split = split_text(text)
    assert (split.diff, split.prose, split.diffstat) == ("", text, False)


def test_prose_after_a_complete_hunk_is_prose():
    split = split_text(DIFF + "Thanks,\nJane\n")
    assert split.diff == DIFF
    assert split.prose == "Thanks,\nJane\n"


def test_a_hunk_cut_short_ends_the_diff():
    text = "x\n---\n" + DIFF.replace(" echo json_encode([]);\n", "") + "Thanks\n"
    split = split_text(text)
    assert split.diff == DIFF.replace(" echo json_encode([]);\n", "")
    assert split.prose == "x\n---\nThanks\n"


def test_crlf_normalised_text_splits_like_lf():
    text = PATCH_MAIL.replace("\n", "\r\n").replace("\r\n", "\n")
    assert split_text(text) == split_text(PATCH_MAIL)


def test_a_binary_patch():
    text = (
        "Add a pixel\n---\n pixel.bmp | Bin 0 -> 142 bytes\n\n"
        "diff --git a/pixel.bmp b/pixel.bmp\nnew file mode 100644\nindex 0000000..9710347\nGIT binary patch\n"
        "literal 142\nzcmZ?r?PGv|E+AC{#Eft(0hV9^lFE7z3>E+r{}~t{2+VVG4=P5;5yxUeQzj#`nE?RC\nCeh3`^\n\n"
        "literal 0\nHcmV?d00001\n\n-- \n2.35.3\n"
    )
    split = split_text(text)
    assert split.diff == (
        "diff --git a/pixel.bmp b/pixel.bmp\nnew file mode 100644\nindex 0000000..9710347\nGIT binary patch\n"
        "literal 142\nzcmZ?r?PGv|E+AC{#Eft(0hV9^lFE7z3>E+r{}~t{2+VVG4=P5;5yxUeQzj#`nE?RC\nCeh3`^\n\n"
        "literal 0\nHcmV?d00001\n"
    )
    assert split.prose == "Add a pixel\n---\n pixel.bmp | Bin 0 -> 142 bytes\n\n\n-- \n2.35.3\n"
    assert files_touched(split) == (FileChange(path="pixel.bmp", added=True, binary=True, new_mode="100644"),)


def test_a_mode_only_change():
    split = split_text("x\n---\ndiff --git a/s.sh b/s.sh\nold mode 100644\nnew mode 100755\n")
    assert split.diff == "diff --git a/s.sh b/s.sh\nold mode 100644\nnew mode 100755\n"
    (change,) = files_touched(split)
    assert change == FileChange(path="s.sh", old_mode="100644", new_mode="100755")
    assert change.mode_changed


def test_a_rename_only_change():
    text = (
        "x\n---\ndiff --git a/old.txt b/new.txt\nsimilarity index 100%\nrename from old.txt\n"
        "rename to new.txt\n-- \n2.1\n"
    )
    split = split_text(text)
    assert split.diff == "diff --git a/old.txt b/new.txt\nsimilarity index 100%\nrename from old.txt\nrename to new.txt\n"
    assert split.prose == "x\n---\n-- \n2.1\n"
    assert files_touched(split) == (FileChange(path="new.txt", old_path="old.txt", renamed=True),)


def test_a_new_empty_file():
    split = split_text("x\n---\ndiff --git a/empty b/empty\nnew file mode 100644\nindex 0000000..e69de29\n")
    assert split.diff == "diff --git a/empty b/empty\nnew file mode 100644\nindex 0000000..e69de29\n"
    assert files_touched(split) == (FileChange(path="empty", added=True, new_mode="100644"),)


def test_a_deleted_file():
    text = (
        "x\n---\ndiff --git a/gone.txt b/gone.txt\ndeleted file mode 100644\nindex 1111111..0000000\n"
        "--- a/gone.txt\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-a\n-b\n"
    )
    assert files_touched(split_text(text)) == (
        FileChange(path="gone.txt", deleted=True, old_mode="100644", lines_removed=2),
    )


MULTI = """\
diff --git a/f b/f
index 1..2 100644
--- a/f
+++ b/f
@@ -1,2 +1,2 @@
 a
-b
\\ No newline at end of file
+c
\\ No newline at end of file
@@ -10,1 +10,2 @@
 z
+y
diff --git a/g b/g
index 1..2 100644
--- a/g
+++ b/g
@@ -1 +1 @@
-old
+new
\\ No newline at end of file
"""


def test_several_hunks_and_no_newline_markers():
    split = split_text("x\n---\n" + MULTI + "Thanks\n")
    assert split.diff == MULTI
    assert split.prose == "x\n---\nThanks\n"
    assert files_touched(split) == (
        FileChange(path="f", old_mode="100644", new_mode="100644", lines_added=2, lines_removed=1),
        FileChange(path="g", old_mode="100644", new_mode="100644", lines_added=1, lines_removed=1),
    )


def test_a_no_newline_marker_as_the_very_last_line():
    text = "x\n---\ndiff --git a/l b/l\nnew file mode 120000\nindex 0000000..186b906\n--- /dev/null\n+++ b/l\n@@ -0,0 +1 @@\n+../target\n\\ No newline at end of file"
    split = split_text(text)
    assert split.diff.endswith("+../target\n\\ No newline at end of file\n")
    assert files_touched(split) == (FileChange(path="l", added=True, new_mode="120000", lines_added=1),)


def test_blank_context_lines_without_their_space():
    """Mailers strip the lone space of blank context lines; the hunk still counts them."""
    text = (
        "x\n---\ndiff --git a/p.py b/p.py\nindex 1..2 100644\n--- a/p.py\n+++ b/p.py\n"
        "@@ -1,4 +1,5 @@\n def f():\n\n-    return 1\n+    x = 1\n+    return x\n\nAfter the diff.\n"
    )
    split = split_text(text)
    assert split.diff == (
        "diff --git a/p.py b/p.py\nindex 1..2 100644\n--- a/p.py\n+++ b/p.py\n"
        "@@ -1,4 +1,5 @@\n def f():\n\n-    return 1\n+    x = 1\n+    return x\n\n"
    )
    assert split.prose == "x\n---\nAfter the diff.\n"
    assert files_touched(split) == (
        FileChange(path="p.py", old_mode="100644", new_mode="100644", lines_added=2, lines_removed=1),
    )


def test_a_cvs_diff():
    text = (
        "Fix it.\n\nIndex: bfd/elflink.c\n===================================================================\n"
        "RCS file: /cvs/src/src/bfd/elflink.c,v\nretrieving revision 1.430\ndiff -u -p -r1.430 elflink.c\n"
        "--- bfd/elflink.c\t1 Dec 2011 -0000\t1.430\n+++ bfd/elflink.c\t5 Dec 2011 -0000\n"
        "@@ -1,2 +1,3 @@\n a\n+b\n c\n"
    )
    split = split_text(text)
    assert split.prose == "Fix it.\n\n"
    assert split.diff == text[len("Fix it.\n\n"):]
    assert files_touched(split) == (FileChange(path="bfd/elflink.c", lines_added=1),)


def test_a_bare_unified_diff_without_git_header():
    split = split_text("Hello\n--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n")
    assert split.diff == "--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n"
    assert split.message == "Hello"
    assert files_touched(split) == (FileChange(path="f", lines_added=1, lines_removed=1),)


def test_a_hunk_right_after_a_rename_header():
    text = (
        "x\n---\ndiff --git a/old b/new\nsimilarity index 90%\nrename from old\nrename to new\n"
        "@@ -1,2 +1,2 @@\n a\n-b\n+c\n"
    )
    assert files_touched(split_text(text)) == (
        FileChange(path="new", old_path="old", renamed=True, lines_added=1, lines_removed=1),
    )


def test_a_file_unidiff_rejects_is_kept_and_marked():
    """A hunk shorter than its header says (corpus mail 0009): unidiff raises; keep the file, marked."""
    text = (
        "x\n---\ndiff --git a/old b/new\nsimilarity index 90%\nrename from old\nrename to new\n"
        "@@ -1,3 +1,3 @@\n a\n-b\n+c\n"
        "diff --git a/x b/y\nsimilarity index 100%\nrename from x\nrename to y\n"
    )
    assert files_touched(split_text(text)) == (
        FileChange(path="new", lines_added=1, lines_removed=1, malformed=True),
        FileChange(path="y", old_path="x", renamed=True),
    )


# A `---`/`+++` pair belongs to the `diff --git` or `Index:` header before it: one segment per file.
TWO_FILES = """\
x
---
diff --git a/a.txt b/a.txt
index 1111111..2222222 100644
--- a/a.txt
+++ b/a.txt
@@ -1,3 +1,3 @@
-one
+uno
 two
diff --git a/b.txt b/b.txt
index 3333333..4444444 100644
--- a/b.txt
+++ b/b.txt
@@ -1 +1 @@
-old
+new
"""


def test_one_segment_per_git_file():
    split = split_text(TWO_FILES)
    assert split.segments == (
        "diff --git a/a.txt b/a.txt\nindex 1111111..2222222 100644\n--- a/a.txt\n+++ b/a.txt\n"
        "@@ -1,3 +1,3 @@\n-one\n+uno\n two\n",
        "diff --git a/b.txt b/b.txt\nindex 3333333..4444444 100644\n--- a/b.txt\n+++ b/b.txt\n"
        "@@ -1 +1 @@\n-old\n+new\n",
    )


def test_one_segment_per_cvs_file():
    text = (
        "Index: bfd/elflink.c\n===================================================================\n"
        "RCS file: /cvs/src/src/bfd/elflink.c,v\nretrieving revision 1.430\ndiff -u -p -r1.430 elflink.c\n"
        "--- bfd/elflink.c\t1 Dec 2011 -0000\t1.430\n+++ bfd/elflink.c\t5 Dec 2011 -0000\n"
        "@@ -1,2 +1,3 @@\n a\n+b\n c\n"
    )
    assert split_text(text).segments == (text,)


def test_a_malformed_file_does_not_make_the_others_count_twice():
    """a.txt's hunk is one line short, so unidiff raises and each segment is parsed alone:
    a.txt is kept, marked, with the modes its index line gives; b.txt appears once."""
    assert files_touched(split_text(TWO_FILES)) == (
        FileChange(path="a.txt", old_mode="100644", new_mode="100644", lines_added=1, lines_removed=1, malformed=True),
        FileChange(path="b.txt", old_mode="100644", new_mode="100644", lines_added=1, lines_removed=1),
    )


@pytest.mark.parametrize(
    "text, stat",
    [
        (" 1 file changed, 1 insertion(+), 1 deletion(-)\n", True),
        (" 3 files changed, 10 insertions(+)\n", True),
        (" 2 files changed, 4 deletions(-)\n", True),
        ("Nothing changed here.\n", False),
        ("> 1 file changed, 1 insertion(+)\n", False),
    ],
)
def test_diffstat(text, stat):
    assert split_text("Cover\n\n" + text).diffstat is stat


PULL = """\
Hi Linus,

The following changes since commit 1234567890abcdef1234567890abcdef12345678:

  Linux 5.4 (2019-11-24 16:32:01 -0800)

are available in the git repository at:

  git://git.kernel.org/pub/scm/linux/kernel/git/x/y.git tags/for-5.5

for you to fetch changes up to abcdefabcdefabcdefabcdefabcdefabcdefabcd:
"""


@pytest.mark.parametrize(
    "text, url",
    [
        (PULL, "git://git.kernel.org/pub/scm/linux/kernel/git/x/y.git tags/for-5.5"),
        (PULL.replace("git repository", "Git repository"), "git://git.kernel.org/pub/scm/linux/kernel/git/x/y.git tags/for-5.5"),
        (PULL.replace(" tags/for-5.5", "\n  tags/for-5.5"), "git://git.kernel.org/pub/scm/linux/kernel/git/x/y.git tags/for-5.5"),
        (PULL.replace("tags/for-5.5", "tags/for-5.5   "), "git://git.kernel.org/pub/scm/linux/kernel/git/x/y.git tags/for-5.5"),
        (PULL.replace(" tags/for-5.5", ""), "git://git.kernel.org/pub/scm/linux/kernel/git/x/y.git"),
        (PULL.replace("git://git.kernel.org/pub/scm/linux/kernel/git/x/y.git tags/for-5.5", "https://github.com/x/y.git master"), "https://github.com/x/y.git master"),
        (PULL.replace("git://git.kernel.org/pub/scm/linux/kernel/git/x/y.git tags/for-5.5", "git@github.com:x/y.git master"), "git@github.com:x/y.git master"),
        (PULL.replace("git://git.kernel.org/pub/scm/linux/kernel/git/x/y.git", "git+ssh://git.kernel.org/x/y.git"), "git+ssh://git.kernel.org/x/y.git tags/for-5.5"),
        ("are available in the git repository at:\n  git://x/y master\n", None),  # no "following changes"
        ("> The following changes since commit 1:\n> are available in the git repository at:\n>   git://x/y master\n", None),
        ("Please pull git://x/y master.\n", None),
    ],
)
def test_find_pull_url(text, url):
    assert find_pull_url(text) == url
