from secbench.cli import main

main()
