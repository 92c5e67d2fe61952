"""python -m tools.compile_tag, in-process: the tag follows the compile inputs, and a bad
-c names itself with exit code 2."""
from tools.compile_tag import main


def test_the_tag_is_compile_and_the_model_version_and_follows_the_inputs(capsys):
    assert main([]) == 0
    default = capsys.readouterr().out.strip()
    assert default.startswith("compile-") and len(default) > len("compile-")
    assert main(["-c", "imageTag=another-commit"]) == 0
    assert capsys.readouterr().out.strip() == default  # a new image does not make a new model version
    assert main(["-c", "modelRevision=0123456789abcdef0123456789abcdef01234567"]) == 0
    assert capsys.readouterr().out.strip() != default


def test_a_bad_setting_exits_2_with_its_name(capsys):
    assert main(["-c", "minReplicas=many"]) == 2
    assert "minReplicas" in capsys.readouterr().err
    assert main(["-c", "noequals"]) == 2
